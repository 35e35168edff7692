"""emocache's packaged manifests: TOML data files (label sets, named stage
configurations, head stage lists, paper tables), read through
importlib.resources by pipeline/presets.py. Not code."""
