"""Helpers every suite imports: the one poller, the one mirror process, process plumbing."""
