"""The running appliance: wiring, the capture loop, its store writer, health and metrics, the benchmark."""
