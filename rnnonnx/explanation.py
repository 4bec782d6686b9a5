"""Why the model said that: each token's contribution to a label, by occlusion.

A token's contribution is how much the label's probability drops when that token alone is
replaced by the unknown id (1), everything else unchanged: positive means the token pushed
towards the label, negative away from it. The text and each of its occluded copies go to the
bundle's ids graph as one batch (a text of ``n`` tokens costs one model call of ``n + 1`` rows),
so the explanation runs on exactly the model that predicts, with ONNX Runtime and numpy only.

Tokens past ``max_len`` are not read by the model and get no contribution; tokens outside the
vocabulary are read as the unknown id already, so occluding them changes nothing (0).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import RnnonnxError
from .text import UNK_ID, token_spans

if TYPE_CHECKING:
    from .predictor import Prediction, Predictor

METHOD = "occlusion: each token replaced by the unknown id, one at a time"
# |contribution| as a share of the largest one, from which a token is coloured weakly / strongly.
WEAK, STRONG = 0.15, 0.5
_ANSI = {(1, True): "\x1b[1;30;42m", (1, False): "\x1b[32m", (-1, True): "\x1b[1;37;41m", (-1, False): "\x1b[31m"}
_RESET = "\x1b[0m"


@dataclass(frozen=True)
class TokenContribution:
    """One token of the text: as written, its ``[start, end)`` offsets, its vocabulary id, and its
    contribution to the explained label (``None`` when it lies beyond ``max_len``)."""

    token: str
    start: int
    end: int
    id: int | None
    contribution: float | None

    @property
    def in_vocabulary(self) -> bool:
        """Whether the model knows this token (else it reads it as the unknown id)."""
        return self.id is not None and self.id != UNK_ID

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of one token."""
        return {
            "token": self.token,
            "start": self.start,
            "end": self.end,
            "id": self.id,
            "in_vocabulary": self.in_vocabulary,
            "contribution": self.contribution,
        }


@dataclass(frozen=True)
class Explanation:
    """A text, the model's prediction for it (the standard shape), the label explained, and each
    token's contribution to that label."""

    text: str
    label: str
    prediction: "Prediction"
    tokens: list[TokenContribution]

    @property
    def beyond_max_len(self) -> int:
        """Tokens the model never read (the text is longer than the bundle's ``max_len``)."""
        return sum(1 for t in self.tokens if t.contribution is None)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: ``text``, ``explained_label``, ``method``, ``prediction`` (as
        ``predict --json`` gives it) and ``tokens`` in text order."""
        return {
            "text": self.text,
            "explained_label": self.label,
            "method": METHOD,
            "prediction": self.prediction.to_dict(),
            "tokens": [t.to_dict() for t in self.tokens],
            "tokens_beyond_max_len": self.beyond_max_len,
        }

    def to_json(self) -> str:
        """One JSON document (text kept as it is, not \\u-escaped)."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def _header(self) -> str:
        p = self.prediction
        line = f"predicted {p.label} (score {p.score:.4f})"
        if self.label != p.label:
            line += f"; explaining {self.label} (probability {p.probabilities[self.label]:.4f})"
        return line

    def _largest(self) -> float:
        return max([abs(t.contribution) for t in self.tokens if t.contribution is not None] + [0.0])

    def terminal(self, color: bool) -> str:
        """The text with tokens coloured by contribution (``color``: ANSI escapes, green for, red
        against, bold on a background when strong), then one line per token; without ``color``
        the same in plain text."""
        largest = self._largest()
        lines = [self._header()]
        if color:
            out, at = [], 0
            for t in self.tokens:
                out.append(self.text[at : t.start])
                style = _style(t.contribution, largest)
                piece = self.text[t.start : t.end]
                out.append(f"{_ANSI[style]}{piece}{_RESET}" if style else piece)
                at = t.end
            out.append(self.text[at:])
            lines += [
                "".join(out),
                f"({_ANSI[(1, True)]}for{_RESET} / {_ANSI[(-1, True)]}against{_RESET} {self.label}; "
                f"strong: over {STRONG:.0%} of the largest contribution)",
            ]
        lines.append(f"{'contribution':>12}  token")
        for t in self.tokens:
            note = "" if t.in_vocabulary else "  (unknown to the model)"
            if t.contribution is None:
                lines.append(f"{'-':>12}  {t.token}  (beyond max_len: not read)")
            else:
                lines.append(f"{t.contribution:>+12.4f}  {t.token}{note}")
        return "\n".join(lines)

    def html(self) -> str:
        """A small self-contained HTML page: the text with each token shaded by its contribution
        (its value on hover), and the table of contributions. Every piece of text is escaped."""
        largest = self._largest() or 1.0
        pieces, at = [], 0
        for t in self.tokens:
            pieces.append(html.escape(self.text[at : t.start]))
            title = "beyond max_len: not read" if t.contribution is None else f"{t.contribution:+.4f}"
            pieces.append(
                f'<span style="background:{_rgba(t.contribution, largest)}" title="{html.escape(title)}">'
                f"{html.escape(self.text[t.start : t.end])}</span>"
            )
            at = t.end
        pieces.append(html.escape(self.text[at:]))
        rows = "\n".join(
            f"<tr><td>{html.escape(t.token)}</td><td>{t.start}-{t.end}</td>"
            f"<td>{'-' if t.contribution is None else f'{t.contribution:+.4f}'}</td>"
            f"<td>{'yes' if t.in_vocabulary else 'no'}</td></tr>"
            for t in self.tokens
        )
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rnnonnx explanation: {html.escape(self.label)}</title>
<style>
body {{ font-family: sans-serif; max-width: 50em; margin: 2em auto; }}
p.text {{ font-size: 1.3em; line-height: 1.8; white-space: pre-wrap; }}
p.text span {{ border-radius: 3px; padding: 0 1px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
</style>
</head>
<body>
<p>{html.escape(self._header())}. Green: the token pushes towards <b>{html.escape(self.label)}</b>; red: away from it
(its probability moves by the value shown when the token is replaced by the unknown token).</p>
<p class="text">{"".join(pieces)}</p>
<table>
<tr><th>token</th><th>characters</th><th>contribution</th><th>in vocabulary</th></tr>
{rows}
</table>
</body>
</html>
"""

    def write_html(self, path: str | os.PathLike) -> None:
        """Write :meth:`html` to ``path``; the file appears complete or not at all."""
        from .files import atomic_file

        try:
            with atomic_file(path, "w", encoding="utf-8") as handle:
                handle.write(self.html())
        except IsADirectoryError:
            raise RnnonnxError(f"{path}: is a directory; give a file name for the HTML page") from None
        except OSError as exc:
            raise RnnonnxError(f"{path}: cannot write it ({exc.strerror or exc})") from None


def _style(contribution: float | None, largest: float) -> tuple[int, bool] | None:
    """ANSI style key: (sign, strong), or None for no colour."""
    if contribution is None or largest <= 0 or abs(contribution) < WEAK * largest:
        return None
    return (1 if contribution > 0 else -1, abs(contribution) >= STRONG * largest)


def _rgba(contribution: float | None, largest: float) -> str:
    if contribution is None:
        return "transparent"
    alpha = min(1.0, abs(contribution) / largest) * 0.75
    return f"rgba(0,170,0,{alpha:.3f})" if contribution >= 0 else f"rgba(220,0,0,{alpha:.3f})"


def explain(predictor: "Predictor", text: str, label: str | None = None) -> Explanation:
    """Occlusion contributions of ``text``'s tokens to ``label`` (default: the predicted label),
    in one batch on the predictor's ids graph."""
    from .predictor import predictions_from_proba

    if not isinstance(text, str):
        raise RnnonnxError(f"explain takes one text (a string), not {type(text).__name__}")
    labels = predictor.labels
    if label is not None and label not in labels:
        raise RnnonnxError(f"label {label!r} is not one of the model's labels ({', '.join(map(repr, labels))})")
    tokenizer = predictor.tokenizer
    spans = token_spans(text, tokenizer.spec.analyzer, tokenizer.spec.lowercase)
    ids = tokenizer.encode(text)
    if not ids:
        raise RnnonnxError("nothing to explain: the text has no tokens (the model reads it as empty)")
    n = len(ids)
    rows = np.tile(np.asarray(ids, dtype=np.int64), (n + 1, 1))
    rows[np.arange(1, n + 1), np.arange(n)] = UNK_ID
    proba = predictor.ids_proba(rows)
    prediction = predictions_from_proba(proba[:1], labels)[0]
    target = labels.index(label) if label is not None else int(np.argmax(proba[0]))
    drops = (proba[0, target] - proba[1:, target]).astype(np.float64)
    tokens = [
        TokenContribution(text[start:end], start, end, ids[i] if i < n else None, float(drops[i]) if i < n else None)
        for i, (_, start, end) in enumerate(spans)
    ]
    return Explanation(text, labels[target], prediction, tokens)
