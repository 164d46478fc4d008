"""Training pipelines: fit a stage on a workspace's logs and publish a new bundle with it."""
