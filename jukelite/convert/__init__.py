"""Importers of other projects' model files into jukelite bundles (OpenAI Jukebox checkpoints).

Nothing here imports the original projects: their files are read as data, without executing
pickled code, and mapped onto jukelite's own modules.
"""


class ConvertError(ValueError):
    """A file or option an importer cannot use; the message names it and what was expected."""
