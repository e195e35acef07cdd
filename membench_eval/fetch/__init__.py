"""Upstream files: the manifest, sha256 checks, and downloads with a total deadline.

A low-level package (it imports only the foundations: errors, paths) so suites, metrics, search,
generation and the plugins can all resolve a pinned file without importing one another.
"""
