"""Errors raised by deeprc_core, each with a sentence a biologist can act on."""


class DeepRCError(ValueError):
    """Input, model or configuration problem explained in plain words."""
