"""SageMaker operations behind `make push train tune deploy transform predict delete-endpoint`."""
