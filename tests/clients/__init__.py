"""Real clients (dockerd, containerd's ctr, podman) pulling through a real mirror process."""
