"""The sidecar in front of every model server: proxy, concurrency limit, health and metrics."""
