"""Tool endpoints (fetch-url, web-research, PDF extract, transcription), their jobs and Celery task.

One Tool shape and registry (base.py) serve both the HTTP views and the Celery task; every
URL is fetched through the SSRF-safe fetcher (fetching.py).
"""
