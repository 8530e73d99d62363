"""The HTTP API (FastAPI): open and drive collections cases from other systems without a
Temporal client. ``create_app`` builds it; ``starter.py api`` serves it with uvicorn."""
