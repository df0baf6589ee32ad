"""The platform wing: the machine and process a job runs in (GPUs and CUDA libraries, the
CPU share, mounted output folders, SIGTERM, the stall watchdog); the server uses it too."""
