"""Reference model server: a scikit-learn model behind FastAPI, run by gunicorn with uvicorn workers."""
