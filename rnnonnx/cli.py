"""The ``rnnonnx`` command line. Heavy libraries load inside the commands that need them,
so ``rnnonnx --help`` and ``rnnonnx predict`` never import torch or scikit-learn."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from . import __version__
from .config import (
    ANALYZER_CHOICES,
    ARCHS,
    AUTO_BATCH,
    AUTO_BATCH_MAX,
    AUTO_BATCH_ROWS,
    AUTO_CHAR_SHARE,
    AUTO_EPOCHS,
    AUTO_MAX_LEN_CAP,
    AUTO_MAX_LEN_FLOOR,
    AUTO_MAX_LEN_PERCENTILE,
    AUTO_NGRAM_BUCKETS,
    AUTO_NGRAM_MEDIAN_TOKENS,
    DEVICES,
    LINEAR_MAX_LEN_CAP,
    LOGIT_ADJUSTMENT,
    MANY_ROWS,
    MANY_ROWS_EPOCHS,
    MAX_LINEAR_WEIGHT,
    MAX_LOGIT_ADJUSTMENT,
    MAX_PARITY_TOLERANCE,
    MONITORS,
    PARITY_TOLERANCE,
    POOLING_CHOICES,
    TrainConfig,
)
from .errors import RnnonnxError

DEFAULTS = TrainConfig()
TRAIN_HINT = 'this command needs the training extra: pip install "rnnonnx[train]"'


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user-facing errors into one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RnnonnxError as exc:
            raise click.ClickException(str(exc)) from None
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in ("torch", "onnx", "sklearn", "safetensors"):
                raise click.ClickException(f"{exc.name} is not installed; {TRAIN_HINT}") from None
            raise
        except KeyboardInterrupt:
            click.echo("interrupted; nothing was left half-written", err=True)
            sys.exit(130)

    return wrapper


def data_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The file options shared by every command that reads labelled texts."""
    command = click.option(
        "--multi-label",
        is_flag=True,
        help="Multi-label even if every text has exactly one label (it is anyway when any text has several or none).",
    )(command)
    command = click.option(
        "--label-sep",
        default=None,
        metavar="SEP",
        help="Split CSV/TSV/JSONL label cells on SEP into several labels (multi-label when a text gets other than one; "
        "an empty cell: no label). JSON lists of labels need no separator.",
    )(command)
    command = click.option("--label-col", default="label", show_default=True, help="Column (or JSON key) holding the label.")(
        command
    )
    command = click.option("--text-col", default="text", show_default=True, help="Column (or JSON key) holding the text.")(
        command
    )
    command = click.option(
        "--format",
        "fmt",
        type=click.Choice(["csv", "tsv", "jsonl", "fasttext"]),
        default=None,
        help="File format; by default taken from the extension (.csv, .tsv, .jsonl; .txt: fastText's __label__ lines).",
    )(command)
    return command


# The ONNX Runtime options of every command that runs a bundle (predict, evaluate, serve, ...).
GRAPHS = ("auto", "ids", "text")
ORT_DEVICE = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="ONNX Runtime device (cuda needs rnnonnx[gpu]).",
)
ORT_GRAPH = click.option(
    "--graph",
    type=click.Choice(GRAPHS),
    default="auto",
    show_default=True,
    help="ids: tokenize in Python, model.onnx; text: raw strings into model.text.onnx; auto: the faster one.",
)
ORT_INT8 = click.option("--int8", is_flag=True, help="Run the bundle's int8 model (export with --quantize int8).")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="rnnonnx")
def main() -> None:
    """Train recurrent text classifiers in PyTorch and ship them through ONNX.

    \b
    rnnonnx train --out runs/lstm              # fit on the built-in dataset
    rnnonnx export runs/lstm --out bundles/lstm
    rnnonnx predict bundles/lstm "What a film"
    rnnonnx evaluate bundles/lstm --run runs/lstm --plot plots
    rnnonnx explain bundles/lstm "What a film"
    """


@main.command("train")
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled texts (CSV, TSV or JSON Lines, UTF-8). Default: the built-in movie-review dataset.",
)
@data_options
@click.option("--arch", type=click.Choice(ARCHS), default=DEFAULTS.arch, show_default=True, help="Recurrent layer type.")
@click.option(
    "--bidirectional/--unidirectional", default=DEFAULTS.bidirectional, show_default=True, help="Read texts in both directions."
)
@click.option("--layers", type=int, default=DEFAULTS.layers, show_default=True, help="Stacked recurrent layers.")
@click.option(
    "--embed-dim",
    type=int,
    default=DEFAULTS.embed_dim,
    show_default=True,
    help="Token embedding size (with --vectors: the file's).",
)
@click.option("--hidden", type=int, default=DEFAULTS.hidden, show_default=True, help="Hidden size per direction.")
@click.option(
    "--dropout",
    type=float,
    default=DEFAULTS.dropout,
    show_default=True,
    help="Dropout on embeddings, between layers and before the head.",
)
@click.option(
    "--pooling",
    type=click.Choice(POOLING_CHOICES),
    default=DEFAULTS.pooling,
    show_default=True,
    help="What the head reads: last (final step of each direction), max (maximum over the text's steps), concat (both); "
    "auto: max when the median training text is longer than 32 tokens (half of --max-len if that is less), else last.",
)
@click.option(
    "--members",
    type=int,
    default=DEFAULTS.members,
    show_default=True,
    help="Classifiers trained from different seeds whose probabilities are averaged (one ONNX graph); "
    "on CPU they train side by side, one per core.",
)
@click.option(
    "--analyzer",
    type=click.Choice(ANALYZER_CHOICES),
    default=DEFAULTS.analyzer,
    show_default=True,
    help="word: runs of 2+ letters/digits (scikit-learn's default); char: single characters, for languages without "
    f"spaces and Korean; auto: char when {AUTO_CHAR_SHARE:.0%} or more of the training texts' letters and digits are "
    "Chinese, Japanese, Korean, Thai, Lao, Khmer or Myanmar, else word.",
)
@click.option(
    "--max-len",
    default=str(DEFAULTS.max_len),
    show_default=True,
    metavar="N|auto",
    help=f"Keep the first N tokens of each text; auto: the {AUTO_MAX_LEN_PERCENTILE}th percentile of the training texts' "
    f"token counts, between {AUTO_MAX_LEN_FLOOR} and {AUTO_MAX_LEN_CAP}.",
)
@click.option(
    "--ngram-buckets",
    default=str(DEFAULTS.ngram_buckets),
    show_default=True,
    metavar="N|auto",
    help="Rows of the hashed-bigram table of the bag-of-n-grams branch beside the recurrent one "
    "(mean of token and bigram embeddings, fastText-style); 0 turns it off; auto: "
    f"{AUTO_NGRAM_BUCKETS} when the median training text has more than {AUTO_NGRAM_MEDIAN_TOKENS} tokens, else 0.",
)
@click.option(
    "--branch-dropout",
    type=float,
    default=DEFAULTS.branch_dropout,
    show_default=True,
    help="Share of training rows whose recurrent features are dropped, so the bag branch learns to classify alone.",
)
@click.option(
    "--linear-weight",
    default=str(DEFAULTS.linear_weight),
    show_default=True,
    metavar="W|auto",
    help="Share of the linear member (tf-idf logistic regression over tokens and bigrams, in the same graph) "
    f"in every prediction, at most {MAX_LINEAR_WEIGHT:g}; auto: chosen on the validation rows; 0: no linear member.",
)
@click.option(
    "--linear-buckets",
    default=str(DEFAULTS.linear_buckets),
    show_default=True,
    metavar="N|auto",
    help="The linear member's bigrams: auto, an exact index of the bigrams found in at least two training texts; "
    "N, every bigram hashed into N rows.",
)
@click.option(
    "--linear-max-len",
    default=str(DEFAULTS.linear_max_len),
    show_default=True,
    metavar="N|auto",
    help="Tokens of each text the linear member reads (the recurrent members read --max-len of them); auto: as "
    f"--max-len auto, up to {LINEAR_MAX_LEN_CAP}.",
)
@click.option(
    "--logit-adjustment",
    default=str(DEFAULTS.logit_adjustment),
    show_default=True,
    metavar="S|auto",
    help="Lean the predictions towards rarer classes: S times the log of each class's share of the training rows "
    f"is taken from its logit (0: none, 1: full adjustment for balanced error, at most {MAX_LOGIT_ADJUSTMENT:g}); "
    f"auto: {LOGIT_ADJUSTMENT:g}, or 0 with --class-weight. No effect on balanced classes.",
)
@click.option(
    "--min-df", type=int, default=DEFAULTS.min_df, show_default=True, help="Drop tokens seen in fewer than N training texts."
)
@click.option("--max-vocab", type=int, default=DEFAULTS.max_vocab, show_default=True, help="Keep the N most frequent tokens.")
@click.option(
    "--epochs",
    default=str(DEFAULTS.epochs),
    show_default=True,
    metavar="N|auto",
    help="Maximum epochs (training stops early when the --monitor metric stalls); "
    f"auto: {AUTO_EPOCHS}, or {MANY_ROWS_EPOCHS} from {MANY_ROWS:,} training rows on.",
)
@click.option(
    "--patience",
    type=int,
    default=DEFAULTS.patience,
    show_default=True,
    help="Epochs without validation improvement before stopping.",
)
@click.option(
    "--monitor",
    type=click.Choice(MONITORS),
    default=DEFAULTS.monitor,
    show_default=True,
    help="What early stopping watches and what picks the kept epoch (accuracy: loss breaks ties).",
)
@click.option(
    "--batch-size",
    default=str(DEFAULTS.batch_size),
    show_default=True,
    metavar="N|auto",
    help=f"Texts per training step; auto: {AUTO_BATCH}, doubled for every {AUTO_BATCH_ROWS:,} training rows up to "
    f"{AUTO_BATCH_MAX}, with --lr scaled by the square root of the growth.",
)
@click.option(
    "--lr",
    type=float,
    default=DEFAULTS.lr,
    show_default=True,
    help=f"Adam learning rate (at batch {AUTO_BATCH} with --batch-size auto).",
)
@click.option(
    "--validation", type=float, default=DEFAULTS.validation, show_default=True, help="Fraction held out for early stopping."
)
@click.option(
    "--test",
    type=float,
    default=DEFAULTS.test,
    show_default=True,
    help="Fraction held out, untouched, for the final test score (0 with --test-file).",
)
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Random seed: same seed, same model.")
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default=DEFAULTS.device,
    show_default=True,
    help="Where PyTorch trains (auto: CUDA if available).",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="Also fit TF-IDF (word 1-2-grams) + logistic regression on the same split and print both scores side by side.",
)
@click.option(
    "--calibrate/--no-calibrate",
    default=DEFAULTS.calibrate,
    show_default=True,
    help="Fit a temperature on the validation rows so the probabilities match how often the model is right; "
    "the bundle's graphs carry it (accuracy unchanged).",
)
@click.option(
    "--class-weight",
    default=None,
    metavar="balanced|LABEL=W,...",
    help="Weigh the loss by class: 'balanced' (inversely to each class's training rows) or explicit weights "
    "like 'spam=5,ham=1' (unlisted labels weigh 1). Pair it with --monitor val_loss (weighted the same "
    "way): early stopping on accuracy favours the majority class.",
)
@click.option(
    "--vectors",
    type=click.Path(dir_okay=False),
    default=None,
    help="Pretrained word vectors (word2vec/GloVe/fastText .vec text, optionally gzipped) that initialise the "
    "embedding of the vocabulary words they cover; the embedding size follows the file.",
)
@click.option(
    "--freeze-embeddings", is_flag=True, help="Keep the rows initialised from --vectors fixed (the other words still learn)."
)
@click.option(
    "--refit/--no-refit",
    default=None,
    help="Once early stopping has chosen each member's epochs, train again on training + validation rows for "
    "that many epochs (as fastText's autotune does); the validation-fitted temperature is kept. "
    f"Default: refit below {MANY_ROWS:,} training rows (above, it about doubles the training time "
    "for under a point of held-out accuracy).",
)
@click.option(
    "--autotune",
    default=None,
    metavar="DURATION",
    help="Search architecture, sizes, dropout, learning rate, batch size, max length, pooling and members on "
    "the validation rows for this long (90s, 10m, 1h; needs rnnonnx[tune]); options you set are kept, not searched.",
)
@click.option(
    "--test-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Your own labelled test texts (same columns), scored at the end instead of a held-out split "
    "(--test then defaults to 0).",
)
@click.option(
    "--out",
    type=click.Path(),
    default="runs/default",
    show_default=True,
    help="Run directory to write. An existing run there is replaced once training succeeds; anything else is refused.",
)
@click.option(
    "--export",
    "bundle",
    type=click.Path(),
    default=None,
    help="Also export the run to this bundle directory once it is written, as `rnnonnx export RUN --out DIR` "
    "would (parity checked), in the same process. Checked before training, like --out.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
@friendly
def train_command(
    ctx: click.Context,
    data: str | None,
    fmt: str | None,
    text_col: str,
    label_col: str,
    label_sep: str | None,
    multi_label: bool,
    out: str,
    bundle: str | None,
    quiet: bool,
    test_file: str | None,
    **options: Any,
) -> None:
    """Fit a classifier and write a run directory (weights, vocabulary, labels, metrics).

    With --export DIR, the bundle too: one command from labelled texts to a bundle, without a second
    process importing torch and reading the run again.
    """
    from click.core import ParameterSource

    from .api import train

    if bundle is not None:
        from .bundle import is_bundle_dir
        from .files import check_output_directory

        inputs = [out, *(path for path in (data, test_file) if path)]
        check_output_directory(bundle, is_bundle_dir, "bundle", inputs)  # refuse before training, not after it
    # Only the options given on the command line: the others are TrainConfig's defaults anyway,
    # and --autotune searches what was not given, --vectors sets what --embed-dim did not.
    given = {name: value for name, value in options.items() if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT}
    metrics = train(
        out,
        data,
        format=fmt,
        text_col=text_col,
        label_col=label_col,
        label_sep=label_sep,
        multi_label=multi_label,
        progress=not quiet,
        test_file=test_file,
        **given,
    )
    summary = metrics.summary()
    if metrics.autotune is not None:
        from .tuning import summary as tuning_summary

        summary = tuning_summary(metrics.autotune) + "\n" + summary
    if metrics.baseline is not None:
        from .baseline import comparison

        model = json.loads((Path(out) / "config.json").read_text(encoding="utf-8"))["model"]
        summary += "\n" + comparison(metrics, ("bi-" if model["bidirectional"] else "") + model["arch"])
    click.echo(f"{summary}\nrun written to {out}")
    if bundle is not None:
        from .api import export

        try:
            export(out, bundle)
        except RnnonnxError as exc:
            retry = f"rnnonnx export {out} --out {bundle}"
            raise RnnonnxError(f"run written to {out}, bundle not written: {exc}; retry with: {retry}") from None


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Bundle directory to write (an existing bundle there is replaced; anything else is refused). Default: RUN_DIR/bundle.",
)
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    default=None,
    help="Also write int8 twins: LSTM layers on ONNX Runtime's int8 kernel (faster; a text's probabilities move a "
    "little with its batch), GRU/RNN weights stored int8; fp32 and int8 validation accuracy and the measured batch "
    "dependence in the manifest.",
)
@click.option(
    "--tolerance",
    type=float,
    default=PARITY_TOLERANCE,
    show_default=True,
    help=f"Largest |difference| of probabilities between ONNX Runtime and PyTorch that parity accepts (at most "
    f"{MAX_PARITY_TOLERANCE:g}; the manifest records it). Raise it only when export says every top label agrees.",
)
@friendly
def export_command(run_dir: str, out: str | None, quantize: str | None, tolerance: float) -> None:
    """Turn a run into a bundle (ONNX models, tokenizer, labels, manifest), checking parity first.

    The bundle holds model.onnx (token ids in) and model.text.onnx (raw strings in, tokenization
    inside the graph, usable on its own).
    """
    from .api import export

    export(run_dir, out, quantize=quantize, tolerance=tolerance)


def _read_inputs(texts: tuple[str, ...], input_path: str | None, fmt: str | None, text_col: str) -> list[str]:
    if texts and input_path:
        raise RnnonnxError("give texts as arguments or with --input, not both")
    if texts:
        return list(texts)
    if input_path:
        from .batch import iter_texts

        return list(iter_texts(input_path, fmt, text_col))
    if sys.stdin.isatty():
        raise RnnonnxError("no texts: pass them as arguments, with --input FILE, or on standard input (one per line)")
    from .records import Records

    return [line for _, (line,) in Records(sys.stdin.buffer, "txt", "standard input")]


def _predict_to_file(
    predictor: Any,
    input_path: str,
    output_path: str,
    fmt: str | None,
    text_col: str,
    quiet: bool,
    bucketing: bool,
    min_score: float | None,
    label_sep: str,
) -> None:
    """``predict --output``: SIGTERM exits through the same cleanup as Ctrl-C, so no temporary file is left."""
    import signal
    import threading

    from .api import predict_file

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    stats = predict_file(
        predictor,
        input_path,
        output_path,
        format=fmt,
        text_col=text_col,
        bucketing=bucketing,
        progress=not quiet,
        min_score=min_score,
        label_sep=label_sep,
    )
    if not quiet:
        click.echo(
            f"{stats.rows:,} rows in {stats.seconds:.1f}s ({stats.rows_per_second:,.0f} rows/s) written to {stats.output}",
            err=True,
        )


@main.command("predict")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.argument("texts", nargs=-1)
@click.option(
    "--input",
    "input_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Texts to classify: .txt (one per line), or CSV/TSV/JSONL with a text column. Default: arguments, else stdin.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "tsv", "jsonl"]),
    default=None,
    help="Format of --input if its extension does not say.",
)
@click.option("--text-col", default="text", show_default=True, help="Text column of a CSV/TSV/JSONL --input.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: text, label, score, probabilities.")
@ORT_DEVICE
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads per prediction call (default: all usable cores).")
@ORT_INT8
@ORT_GRAPH
@click.option(
    "--output",
    "output_path",
    type=click.Path(allow_dash=True),
    default=None,
    help="Stream --input into this file (its format, or the one --output's extension names) with label and score "
    "columns added, rows in input order; memory stays bounded, and the file appears only when complete. "
    "- writes to standard output.",
)
@click.option("--top-k", type=int, default=None, help="Also list the K most probable labels (-1: every label), best first.")
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    default=None,
    help="Abstain below this probability: the label is empty (null in --json) when the top score is lower. "
    "Multi-label bundles: this one threshold replaces every label's tuned threshold.",
)
@click.option(
    "--label-sep",
    default=",",
    show_default=True,
    metavar="SEP",
    help="With --output to CSV/TSV: joins a multi-label prediction's labels in its label cell (JSONL gets a list).",
)
@click.option("--quiet", is_flag=True, help="No progress bar or summary with --output.")
@click.option(
    "--no-bucketing", is_flag=True, help="Batch texts in input order instead of grouping them by length (slower; for measuring)."
)
@friendly
def predict_command(
    bundle: str,
    texts: tuple[str, ...],
    input_path: str | None,
    fmt: str | None,
    text_col: str,
    as_json: bool,
    device: str,
    threads: int | None,
    int8: bool,
    graph: str,
    output_path: str | None,
    top_k: int | None,
    min_score: float | None,
    label_sep: str,
    quiet: bool,
    no_bucketing: bool,
) -> None:
    """Classify texts with a bundle, using only ONNX Runtime and numpy.

    \b
    rnnonnx predict BUNDLE "What a film" "Dull"
    rnnonnx predict BUNDLE --input big.csv --output preds.csv
    """
    from .api import load, predict

    if output_path and (texts or not input_path or as_json):
        raise RnnonnxError("--output streams a file: give --input FILE, and no text arguments or --json")
    if output_path and top_k is not None:
        raise RnnonnxError("--top-k lists several labels per text: use it with --json, not --output")
    predictor = load(bundle, device=device, threads=threads, precision="int8" if int8 else "fp32", graph=graph)
    if output_path:
        _predict_to_file(predictor, input_path, output_path, fmt, text_col, quiet, not no_bucketing, min_score, label_sep)
        return
    items = _read_inputs(texts, input_path, fmt, text_col)
    predictions = predict(predictor, items, top_k=top_k, min_score=min_score, bucketing=not no_bucketing)
    if as_json:
        for text, prediction in zip(items, predictions):
            click.echo(json.dumps({"text": text, **prediction.to_dict()}, ensure_ascii=False))
        return
    # a multi-label prediction shows its whole set, comma-separated
    shown_labels = [",".join(p.labels) if p.labels is not None else p.label for p in predictions]
    width = max([5] + [len(name) for name in predictor.labels] + [len(s) for s in shown_labels if s])
    click.echo(f"{'label':<{width}}  score   text")
    for text, prediction, label in zip(items, predictions, shown_labels):
        shown = text if len(text) <= 70 else text[:67] + "..."
        label = label or "-"
        click.echo(f"{label:<{width}}  {prediction.score:.4f}  {shown}")
        for entry in (prediction.top or [])[0 if prediction.labels is not None else 1 :]:
            click.echo(f"{entry['label']:<{width}}  {entry['score']:.4f}")


@main.command("evaluate")
@click.argument("target", metavar="BUNDLE_OR_RUN", type=click.Path(file_okay=False))
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    default=None,
    help="Labelled texts to score (CSV, TSV or JSON Lines). Default for a run directory: its test rows.",
)
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the table.")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write PNG figures here: confusion matrix, reliability diagram, coverage/accuracy curve, and training "
    "curves when a run is known (needs rnnonnx[plot]).",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    default=None,
    help="Abstain below this top probability, as 'predict --min-score' does: report coverage, and score the answered rows.",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The bundle's run directory: its test rows are the default data, its metrics.json the curves for --plot "
    "(implied when BUNDLE_OR_RUN is a run).",
)
@ORT_INT8
@ORT_DEVICE
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads per prediction call (default: all usable cores).")
@friendly
def evaluate_command(
    target: str,
    data: str | None,
    fmt: str | None,
    text_col: str,
    label_col: str,
    label_sep: str | None,
    multi_label: bool,
    as_json: bool,
    plot_dir: str | None,
    min_score: float | None,
    run_dir: str | None,
    int8: bool,
    device: str,
    threads: int | None,
) -> None:
    """Score a bundle on labelled texts: accuracy, macro-F1, per-class scores, confusion matrix,
    calibration (ECE, Brier score).

    BUNDLE_OR_RUN is a bundle, or a run directory with an exported bundle (RUN/bundle). The
    data is --data, else the test rows the run kept aside (a bare bundle needs --data or --run).
    Rows whose label the model does not know are counted, named and left out of the metrics.
    """
    from .api import evaluate
    from .data import warn

    result = evaluate(
        target,
        data,
        format=fmt,
        text_col=text_col,
        label_col=label_col,
        label_sep=label_sep,
        multi_label=multi_label,
        run_dir=run_dir,
        plot_dir=plot_dir,
        device=device,
        threads=threads,
        min_score=min_score,
        precision="int8" if int8 else "fp32",
    )
    if as_json:
        note = result.unknown_note()
        if note:
            warn(note)
        click.echo(result.to_json())
    else:
        click.echo(result.table())


@main.command("bench")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Run the bundle was exported from, for PyTorch eager on the same weights (checked). "
    "Default: the bundle's parent when it is a run; with none, PyTorch is skipped.",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    default=None,
    help="Texts to time: CSV/TSV/JSONL with a text column, or .txt one per line. Default: the built-in sentences.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "tsv", "jsonl"]),
    default=None,
    help="Format of --data if its extension does not say.",
)
@click.option("--text-col", default="text", show_default=True, help="Text column of --data.")
@click.option(
    "--threads",
    type=click.IntRange(1),
    multiple=True,
    help="Threads for every engine; repeat to time several counts in the same rounds (--threads 1 --threads 2). "
    "Default: every core this process may use.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Interleaved rounds: each engine measured once per round, in a fresh process; figures are medians over rounds.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Time spent on each measurement in each round.",
)
@click.option(
    "--cold-runs",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Measured runs of each cold start (median reported).",
)
@click.option(
    "--graph",
    type=click.Choice(GRAPHS),
    default="auto",
    show_default=True,
    help="Predictor graph for the ONNX Runtime engines and the cold start, as in 'rnnonnx predict'.",
)
@click.option(
    "--core-env",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A virtual environment with only the predictor installed (pip install rnnonnx): its 'rnnonnx predict' is "
    "cold-started too and judged against the targets.",
)
@click.option("--json", "as_json", is_flag=True, help="The full report as one JSON document.")
@click.option("--markdown", is_flag=True, help="The report as Markdown tables (for benchmarks/ and the README).")
@friendly
def bench_command(
    bundle: str,
    run_dir: str | None,
    data: str | None,
    fmt: str | None,
    text_col: str,
    threads: tuple[int, ...],
    rounds: int,
    seconds: float,
    cold_runs: int,
    graph: str,
    core_env: str | None,
    as_json: bool,
    markdown: bool,
) -> None:
    """Time ORT fp32, ORT int8 (when bundled) and PyTorch eager in interleaved rounds.

    Each round measures every engine once, each in its own process, one at a time, and a
    large numpy matrix product as the machine's reference peak. Reports one-text latency (p50,
    p95), throughput at batch 32 and 256, GFLOP/s at batch 256 and its share of the peak, ratios
    against PyTorch taken within each round, each as the median over rounds with its range; the
    cold start (wall time, peak RSS) of 'rnnonnx predict' on one sentence against a process that
    imports torch and predicts; then whether each target is met. Progress goes to stderr.
    """
    from .api import bench

    if as_json and markdown:
        raise RnnonnxError("choose --json or --markdown, not both")
    report = bench(
        bundle,
        run=run_dir,
        data=data,
        fmt=fmt,
        text_col=text_col,
        threads=list(threads) or None,
        rounds=rounds,
        seconds=seconds,
        cold_runs=cold_runs,
        graph=graph,
        core_env=core_env,
    )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(report.markdown() if markdown else report.text())


@main.command("serve")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Server processes, each with its own copy of the model.",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="Prediction threads per worker (default: usable cores / workers).",
)
@ORT_DEVICE
@ORT_GRAPH
@ORT_INT8
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Most texts in one micro-batch (a larger request runs alone).",
)
@click.option(
    "--max-wait-ms",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="Under load, longest a text waits for others to share its micro-batch "
    "(0: run what is waiting as soon as the model is free).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(1),
    default=1024,
    show_default=True,
    help="Most texts waiting for the model; past it requests get 503 with Retry-After.",
)
@click.option("--no-batching", is_flag=True, help="One model call per request (for comparison).")
@click.option(
    "--max-texts", type=click.IntRange(1), default=256, show_default=True, help="Most texts in one request (413 beyond)."
)
@click.option(
    "--max-text-chars",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Longest text, in characters (413 beyond).",
)
@click.option(
    "--max-body-bytes", type=click.IntRange(1), default=1 << 20, show_default=True, help="Largest request body (413 beyond)."
)
@click.option(
    "--drain-seconds",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="On SIGTERM or Ctrl-C, how long in-flight requests may take to finish before they are cut.",
)
@click.option("--access-log", is_flag=True, help="Log every request.")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
    help="Server log level.",
)
@friendly
def serve_command(bundle: str, no_batching: bool, **options: Any) -> None:
    """Serve a bundle over HTTP (needs rnnonnx[serve]): POST /v1/predict, GET /v1/model, /healthz,
    /readyz, /metrics (Prometheus), /openapi.json.

    \b
    rnnonnx serve BUNDLE --port 8000
    curl -s localhost:8000/v1/predict -d '{"texts": ["What a film"]}'

    Concurrent requests share model calls (micro-batching). The bundle is loaded and
    checked before the port is opened; SIGTERM answers in-flight requests, then exits 0.
    """
    from .api import serve

    serve(bundle, batching=not no_batching, **options)


@main.command("verify")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option(
    "--json", "as_json", is_flag=True, help="The full report as one JSON document on stdout (problems still go to stderr)."
)
@friendly
def verify_command(bundle: str, as_json: bool) -> None:
    """Check a bundle before deploying it: every file's size and sha256, labels, tokenizer and
    manifest consistent, every model file loads in ONNX Runtime and reproduces the golden examples
    stored at export. Exit 0 with a short report, or 1 with one line per problem on stderr.
    """
    from .api import verify

    result = verify(bundle)
    if as_json:
        click.echo(result.to_json())
    elif result.ok:
        click.echo(result.text())
    for problem in result.problems:
        click.echo(problem, err=True)
    if not result.ok:
        sys.exit(1)


@main.command("explain")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.argument("text")
@click.option("--label", default=None, help="Explain this label instead of the predicted one.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON document: the prediction, and each token with its character span and contribution.",
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False), default=None, help="Also write a small self-contained HTML page here."
)
@click.option("--int8", is_flag=True, help="Explain the bundle's int8 model (export with --quantize int8).")
@ORT_DEVICE
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads per prediction call (default: all usable cores).")
@friendly
def explain_command(
    bundle: str, text: str, label: str | None, as_json: bool, html_path: str | None, int8: bool, device: str, threads: int | None
) -> None:
    """Show each token's contribution to the prediction, by occlusion (no torch needed).

    A token's contribution is the drop in the label's probability when that token alone is
    replaced by the unknown token; the text and its occluded copies run as one batch. Coloured
    in a terminal (unless NO_COLOR is set), plain when piped.

    \b
    rnnonnx explain BUNDLE "A gorgeous, witty film"
    rnnonnx explain BUNDLE "A gorgeous, witty film" --json --html why.html
    """
    from .api import explain

    explanation = explain(
        bundle, text, label=label, device=device, threads=threads, precision="int8" if int8 else "fp32", graph="ids"
    )
    if html_path:
        explanation.write_html(html_path)
    if as_json:
        click.echo(explanation.to_json())
    else:
        click.echo(explanation.terminal(color=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    if html_path:
        click.echo(f"HTML written to {html_path}", err=True)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def entry() -> None:
    """The ``rnnonnx`` console script: ``main``, then a quick exit for the predictor-side commands.

    Unloading ONNX Runtime and numpy at interpreter shutdown costs a one-sentence ``rnnonnx
    predict`` about 60 ms, a sixth of its run. When torch was never imported, nothing needs that
    teardown: outputs are written to temporary files and renamed before a command returns, so
    flushing stdout and stderr is all that is left. Commands that loaded torch exit normally.
    A SIGTERM (a process manager stopping the command) unwinds like Ctrl-C, so temporary files
    and training workers are cleaned up, and exits with status 143.
    """
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    try:
        main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    if "torch" in sys.modules:
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # reader gone (e.g. `| head`), or stream closed
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
