"""sagevit_serve: the Flask/gunicorn inference server for models exported by sagevit."""
