"""Report rendering: image grids now; HTML comparison reports (jinja2 + seaborn) build on it."""
