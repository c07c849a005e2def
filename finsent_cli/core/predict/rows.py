"""How records become rows, shared by every way ``finsent predict`` runs: the local engine
(``core.predict.run``), the Ray workers (``core.predict.ray_engine``) and the HTTP API (``serve.app``).

:class:`PredictOptions` says how (one row per record or per document, targets, batching, backend); a
:class:`Chunk` of records is encoded (one input per record, or the sentences of a document cut into
windows that fit the model, ``core.predict.documents``), the classifier's probabilities of its inputs
become the output rows (:func:`chunk_rows`), and :func:`predict_records` does both for records held in
memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from finsent_cli.core.inference.score import signed_score
from finsent_cli.core.predict.documents import AGGREGATIONS, Piece, aggregate, split_sentences, windows
from finsent_cli.core.predict.inputs import InputRecord
from finsent_cli.errors import FinsentError
from finsent_cli.labels import LABELS

if TYPE_CHECKING:  # numpy and torch load only when there is work: `finsent predict --help` stays fast
    import numpy as np

    from finsent_cli.core.inference.classifier import Classifier

COLUMNS = ["line", "text", "label", "confidence", "p_negative", "p_neutral", "p_positive", "score", "status"]
"""The columns of a row per record; ``score`` is ``p_positive - p_negative`` (``core.inference.score``)."""
ENGINES = ("local", "ray")

DEFAULT_BATCH_TOKENS = 8192
"""Padded tokens per forward pass (inputs x longest): 128 headlines of 64 tokens, or 16 paragraphs of 512."""

PER = ("record", "document")

CHARS_PER_TOKEN = 100
"""Most characters a model token is taken to cover (a WordPiece word longer than 100 characters is one
``[UNK]``). A text longer than this many characters per token of the model's window cannot be read
whole: only that many characters are tokenised, and its row says ``truncated``. Without the cap, a
1,000,000-character line without spaces is one ``[UNK]`` and would come back ``ok``."""


@dataclass
class PredictOptions:
    """How records become rows (everything of ``predict``'s command line but input, model and output).

    Attributes:
        batch_size: most texts per forward pass.
        batch_tokens: most padded tokens per forward pass (length-sorted batches, see ``plan_batches``).
        chunk_size: records read, predicted and written at once (constant memory; the unit of ``--resume``).
        per: ``record`` (a row per record) or ``document`` (split into sentences, one aggregated row).
        aggregate: ``mean`` or ``confidence`` (``per document``; see ``core.predict.documents``).
        backend: ``torch``, ``int8`` or ``onnx`` (``core.inference.backends``).
        threads: CPU threads for the model (None: the library's default).
        device: inference device.
        target: the company every record is judged toward; target_column: the column naming it per record.
        engine: ``local`` (this process) or ``ray`` (a pool of model actors, ``core.predict.ray_engine``).
        ray_address: the Ray cluster (default ``$RAY_ADDRESS``, else a local Ray).
        workers: model actors on Ray (default: one per CPU of the cluster).
    """

    batch_size: int = 64
    batch_tokens: int | None = DEFAULT_BATCH_TOKENS
    chunk_size: int | None = None  # None: DEFAULT_CHUNK, or RAY_CHUNK with engine ray
    per: str = "record"
    aggregate: str = "mean"
    backend: str = "torch"
    threads: int | None = None
    device: str = "cpu"
    target: str | None = None
    target_column: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    workers: int | None = None

    def check(self) -> None:
        """Refuse impossible combinations before any work (exit code 2)."""
        if self.target is not None and self.target_column is not None:
            raise FinsentError("give --target NAME (one target for every record) or --target-column COL, not both", exit_code=2)
        if self.target is not None and not self.target.strip():
            raise FinsentError("--target is empty; name the company", exit_code=2)
        if self.per not in PER:
            raise FinsentError(f"unknown --per '{self.per}' (choose {', '.join(PER)})", exit_code=2)
        if self.aggregate not in AGGREGATIONS:
            raise FinsentError(f"unknown --aggregate '{self.aggregate}' (choose {', '.join(AGGREGATIONS)})", exit_code=2)
        if self.per == "document" and self.with_targets:
            raise FinsentError("--per document scores sentence-level models; drop --target / --target-column", exit_code=2)
        if self.engine not in ENGINES:
            raise FinsentError(f"unknown --engine '{self.engine}' (choose {', '.join(ENGINES)})", exit_code=2)
        if self.engine != "ray" and (self.ray_address is not None or self.workers is not None):
            raise FinsentError("--ray-address and --workers are options of --engine ray", exit_code=2)
        for name in ("batch_size", "chunk_size", "workers"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise FinsentError(f"--{name.replace('_', '-')} must be at least 1", exit_code=2)
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise FinsentError("--batch-tokens must be at least 1", exit_code=2)
        if self.threads is not None and self.threads < 1:
            raise FinsentError("--threads must be at least 1", exit_code=2)

    @property
    def with_targets(self) -> bool:
        return self.target is not None or self.target_column is not None

    def columns(self) -> list[str]:
        """The output columns."""
        if self.per == "document":
            return ["line", "text", "label", "confidence", *PROB_COLUMNS, "score", "sentences", "aggregation", "status"]
        return [*(["line", "text", "target"] if self.with_targets else ["line", "text"]), *COLUMNS[2:]]


PROB_COLUMNS = [f"p_{name}" for name in LABELS]
DETAIL_COLUMNS = ["line", "sentence", "part", "parts", "text", "label", "confidence", *PROB_COLUMNS, "score"]


def _scores(p: np.ndarray) -> dict[str, Any]:
    """Label, confidence, probabilities (rounded to six places) and the signed score of one probability row.
    The score is taken from the rounded probabilities, so that in every output ``score`` is exactly
    ``p_positive - p_negative`` as written (to six places)."""
    label = LABELS[int(p.argmax())]
    probs = {c: round(float(p[k]), 6) for k, c in enumerate(PROB_COLUMNS)}
    return {"label": label, "confidence": round(float(p.max()), 6), **probs, "score": round(signed_score(list(probs.values())), 6)}


def _unscored() -> dict[str, Any]:
    return {"label": None, "confidence": None, **dict.fromkeys(PROB_COLUMNS), "score": None}


class Chunk:
    """One chunk of records, encoded (in the reader thread) and then predicted and rendered as rows."""

    def __init__(self, records: list[InputRecord], input_bytes: int, input_sha256: str, position: int = 0) -> None:
        self.records, self.input_bytes, self.input_sha256 = records, input_bytes, input_sha256
        self.position = position  # where the input file stands after this chunk (progress; .gz: compressed bytes)
        self.ids: list[list[int]] = []
        self.cut: list[bool] = []
        self.owner: list[int] = []  # record index of each encoded input
        self.pieces: list[Piece] = []  # per document: what each encoded input is


def _scored(rec: InputRecord, opts: PredictOptions) -> bool:
    """Whether a record gets a prediction (not malformed, not empty, a target when one is needed)."""
    return rec.status is None and bool(rec.text.strip()) and (not opts.with_targets or bool((rec.target or "").strip()))


def encode_records(clf: Classifier, chunk: Chunk, opts: PredictOptions) -> None:
    todo = [i for i, r in enumerate(chunk.records) if _scored(r, opts)]
    targets = [str(chunk.records[i].target) for i in todo] if opts.with_targets else None
    most = clf.max_length * CHARS_PER_TOKEN
    texts = [chunk.records[i].text for i in todo]
    chunk.ids, chunk.cut = clf.encode([t[:most] for t in texts], targets)
    chunk.cut = [cut or len(t) > most for cut, t in zip(chunk.cut, texts)]
    chunk.owner = todo


def special_wrap(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after a single text (``[CLS]``/``[SEP]``, ``</s>``)."""
    plain = tokenizer("finance", add_special_tokens=False)["input_ids"]
    full = tokenizer("finance")["input_ids"]
    at = next(i for i in range(len(full) - len(plain) + 1) if full[i : i + len(plain)] == plain)
    return full[:at], full[at + len(plain) :]


def _encode_documents(clf: Classifier, chunk: Chunk, opts: PredictOptions) -> None:
    tok = clf.tokenizer
    before, after = special_wrap(tok)
    room = clf.max_length - len(before) - len(after)
    stride = max(1, room * 3 // 4)  # windows overlap by a quarter
    for i, rec in enumerate(chunk.records):
        sentences = split_sentences(rec.text) if rec.status is None else []
        if not sentences:
            continue
        encoded = tok(sentences, add_special_tokens=False, return_offsets_mapping=True)
        for n, (sentence, ids, offsets) in enumerate(zip(sentences, encoded["input_ids"], encoded["offset_mapping"]), start=1):
            parts = windows(range(len(ids)), room, stride)
            for k, part in enumerate(parts, start=1):
                chunk.ids.append(before + [ids[t] for t in part] + after)
                chunk.owner.append(i)
                text = sentence if len(parts) == 1 else sentence[offsets[part[0]][0] : offsets[part[-1]][1]]
                chunk.pieces.append(Piece(i, n, k, len(parts), text))


def chunk_rows(chunk: Chunk, probs: np.ndarray, opts: PredictOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The output rows of a chunk, and the ``--details`` rows (a row per sentence or window) per document."""
    by_record: dict[int, list[int]] = {}
    for k, owner in enumerate(chunk.owner):
        by_record.setdefault(owner, []).append(k)
    rows, details = [], []
    for i, rec in enumerate(chunk.records):
        row: dict[str, Any] = {"line": rec.line, "text": rec.text}
        if opts.with_targets:
            row["target"] = rec.target
        mine = by_record.get(i)
        if mine is None:
            row.update(_unscored())
            if opts.per == "document":
                row.update({"sentences": 0, "aggregation": opts.aggregate})
            row["status"] = rec.status or ("empty" if not rec.text.strip() else "no_target")
        elif opts.per == "document":
            row.update(_scores(aggregate(probs[mine], opts.aggregate)))
            pieces = [chunk.pieces[k] for k in mine]
            row.update({"sentences": pieces[-1].sentence, "aggregation": opts.aggregate, "status": "ok"})
            for k, piece in zip(mine, pieces):
                details.append({"line": rec.line, "sentence": piece.sentence, "part": piece.part, "parts": piece.parts, "text": piece.text, **_scores(probs[k])})
        else:
            row.update(_scores(probs[mine[0]]))
            row["status"] = "truncated" if chunk.cut[mine[0]] else "ok"
        rows.append(row)
    return rows, details


def encode_chunk(clf: Classifier, chunk: Chunk, opts: PredictOptions) -> None:
    """Token ids of a chunk's records (one per record), or of their sentences and windows (``per document``)."""
    (_encode_documents if opts.per == "document" else encode_records)(clf, chunk, opts)


def predict_records(clf: Classifier, records: list[InputRecord], opts: PredictOptions) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows (and ``--details`` rows) for records held in memory: what one Ray worker does with a batch."""
    chunk = Chunk(records, 0, "")
    encode_chunk(clf, chunk, opts)
    return chunk_rows(chunk, clf.probs_from_ids(chunk.ids, opts.batch_size, None, opts.batch_tokens), opts)
