"""Errors that carry a message meant for the user, not a traceback."""


class RnnonnxError(Exception):
    """A problem the user can fix (bad input, bad bundle, missing dependency).

    The CLI prints these as one line and exits non-zero; anything else is a bug.
    """


class DataError(RnnonnxError):
    """The training or evaluation data cannot be used as given."""


class BundleError(RnnonnxError):
    """A bundle is missing, corrupted, truncated, foreign or of an unknown format version."""


class ParityError(RnnonnxError):
    """ONNX Runtime and PyTorch disagree beyond tolerance, so no bundle is written."""


class OutputError(RnnonnxError):
    """An output path that rnnonnx refuses to write (it would destroy something it did not write), or cannot."""


class InputTypeError(RnnonnxError, TypeError):
    """A predictor was given something other than a list of ``str`` (bytes, None, a number).

    Both graphs refuse it alike: the text-in one would otherwise read bytes as text, and the
    ids one fail somewhere inside the tokenizer.
    """
