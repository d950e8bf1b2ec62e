"""legaldoc: batch processing of legal documents into text, entities and a graph."""

__version__ = "0.1.0"

PIPELINE_VERSION = "2"
"""Bumped whenever a stage's output changes for the same input; part of every cache key."""
