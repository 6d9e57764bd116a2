"""Typed errors of edgert. Every failure a user can cause maps to one of these, with a message that
says what was wrong and what to do. Native status codes (edgert.h) map one to one."""
from __future__ import annotations


class EdgertError(Exception):
    """Base class of every edgert error."""

    # Set (to the original exception's type name) when a boundary turned an exception nobody
    # foresaw into this typed error, e.g. convert()'s last line of defence. Such an error is still
    # a bug to fix at its root: the fuzz harnesses count it as a finding.
    unexpected: str | None = None


class ModelFormatError(EdgertError):
    """The file is not a valid model file: wrong magic, truncated, corrupt, checksum mismatch, an
    offset or size outside the file, or a source checkpoint the converter cannot read."""


class ModelVersionError(ModelFormatError):
    """The file was written by a newer format version than this edgert understands."""


class UnsupportedModelError(EdgertError):
    """A well-formed file uses something this edgert does not implement: an architecture, a dtype,
    a rope scaling type, a KV-cache type."""


class TokenIdError(EdgertError, ValueError):
    """A token id outside [0, vocab_size)."""


class ContextOverflowError(EdgertError):
    """The tokens do not fit in the context window."""


class OutOfMemoryError(EdgertError, MemoryError):
    """An allocation failed or the requested context exceeds the memory budget."""


class InvalidArgumentError(EdgertError, ValueError):
    """A parameter is out of its range."""


class TokenizerError(EdgertError):
    """Text could not be tokenized or decoded (for example invalid UTF-8 input bytes)."""


class ChatTemplateError(EdgertError):
    """The model's chat template failed to render the messages, or the model has none."""


# Native edgert_status value -> exception class (EDGERT_OK = 0 is not an error).
STATUS_TO_ERROR: dict[int, type[EdgertError]] = {
    1: InvalidArgumentError,
    2: ModelFormatError,  # EDGERT_ERR_IO: raised as FileNotFoundError/OSError by the binding when
                          # the path is missing; otherwise a format problem
    3: ModelFormatError,
    4: ModelVersionError,
    5: UnsupportedModelError,
    6: TokenIdError,
    7: ContextOverflowError,
    8: OutOfMemoryError,
    9: EdgertError,
}
