"""Getting bytes from the web safely: pinned upstream files and reference images.

- :mod:`.download` the manifest, sha256 checks, and downloads with a total deadline;
- :mod:`.settings` the limits for fetching web images, checked when made;
- :mod:`.image_fetch` the fetcher of one web image (retries, deadline, byte and pixel limits);
- :mod:`.image_files` the one checked loader of local image files (the same pixel limit);
- :mod:`.reference_store` fetched images by content hash, plus the coverage log.

A low-level package (it imports only the foundations: errors, paths) so suites, metrics, search,
generation and the plugins can all resolve a pinned file without importing one another.
"""
