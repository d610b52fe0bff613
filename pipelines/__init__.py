"""The example project's own item pipelines, named in settings.toml by import path."""
