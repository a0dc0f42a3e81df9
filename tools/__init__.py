"""Tool endpoints (fetch-url, web-research, PDF extract, transcription) and their Celery tasks.

The tools arrive with their own issue; this app is registered now so that the project
layout, Celery autodiscovery and settings are in place for them.
"""
