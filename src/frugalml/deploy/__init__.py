"""Deployment files for a bundle: a Docker build context and Kubernetes / KServe manifests."""
