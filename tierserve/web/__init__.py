"""Web pages served by the control plane and written by `simulate --html` (static assets
under ``static/``; the vendored chart library under ``static/vendor/``)."""
