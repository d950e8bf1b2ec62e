"""The Celery app of this installation, for Celery's own tools: `celery -A legaldoc inspect active`,
`celery -A legaldoc events`, `celery -A legaldoc flower`. Importing it reads the settings
(`LEGALDOC_*`, `legaldoc.toml`) and builds the app; it connects to nothing until a command does."""

from __future__ import annotations

from legaldoc.config import load_settings
from legaldoc.tasks.app import create_app

app = create_app(load_settings())
