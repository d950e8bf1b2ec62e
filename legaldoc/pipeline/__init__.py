"""Pure pipeline stages: bytes and text in, pydantic models out (no queue, database or UI)."""
