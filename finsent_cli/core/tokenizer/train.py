"""Train a SentencePiece model in T5's layout and save it for ``transformers.AutoTokenizer``.

T5 layout (Raffel et al. 2020, JMLR 21(140)): ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, no BOS, and
``extra_ids`` sentinels ``<extra_id_0..N-1>`` at the top of the vocabulary, ``<extra_id_0>`` being the
last id. SentencePiece (Kudo & Richardson 2018) learns ``vocab_size - extra_ids`` pieces; the sentinels
are appended in the Hugging Face ``tokenizer.json`` we build from the SentencePiece model proto, which
keeps byte fallback (transformers' own T5 conversion drops it), so ids match SentencePiece exactly.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finsent_cli.config.loader import write_resolved_recipe
from finsent_cli.config.tokenizer import TokenizerRecipe
from finsent_cli.core.data.readers import iter_lines
from finsent_cli.core.io import atomic_dir, atomic_write_json
from finsent_cli.core.progress import NullReporter, Reporter
from finsent_cli.errors import FinsentError


@dataclass
class TokenizerResult:
    """Where the tokenizer went and how it does on held-out text."""

    output_dir: Path
    report: dict[str, Any] = field(default_factory=dict)


def _inputs(recipe: TokenizerRecipe) -> tuple[list[Path], Path | None]:
    files, heldout = [], recipe.heldout
    for p in recipe.input:
        if p.is_dir():
            train = p / "train.txt"
            if not train.exists():
                raise FinsentError(f"{p}: no train.txt (is it a folder written by 'finsent prep' with a corpus recipe?)")
            files.append(train)
            if heldout is None and (p / "heldout.txt").exists():
                heldout = p / "heldout.txt"
        else:
            files.append(p)
    return files, heldout


def _sentences(files: list[Path], reporter: Reporter) -> Iterator[str]:
    for path in files:
        with reporter.task(f"reading {path.name}") as task:
            for _, line in iter_lines(path):
                task.advance()
                if line.strip():
                    yield line


def build_hf_tokenizer(model_proto: bytes, extra_ids: int = 100, model_max_length: int = 512) -> Any:
    """Build a transformers fast tokenizer equal to the SentencePiece model plus T5 sentinels.

    Args:
        model_proto: bytes of a trained SentencePiece ``.model``.
        extra_ids: number of ``<extra_id_k>`` sentinels appended at the top of the vocabulary.
        model_max_length: the tokenizer's default truncation length.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``; ``save_pretrained`` writes a folder that
        ``AutoTokenizer.from_pretrained`` loads.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE, Unigram
    from transformers import PreTrainedTokenizerFast

    proto = pb.ModelProto()
    proto.ParseFromString(model_proto)
    byte_fallback = proto.trainer_spec.byte_fallback
    pieces = [(p.piece, p.score) for p in proto.pieces]
    sentinels = [f"<extra_id_{i}>" for i in range(extra_ids)]
    top = _ordered_sentinels(extra_ids)  # id order: <extra_id_0> gets the last id
    if proto.trainer_spec.model_type == pb.TrainerSpec.BPE:
        vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
        merges = _bpe_merges(pieces, vocab)
        vocab.update({s: len(pieces) + i for i, s in enumerate(top)})
        tok = Tokenizer(BPE(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=byte_fallback))
    else:
        scored = pieces + [(s, 0.0) for s in top]
        tok = Tokenizer(Unigram(scored, unk_id=proto.trainer_spec.unk_id, byte_fallback=byte_fallback))
    steps = []
    if proto.normalizer_spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap))
    if steps:
        tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)]
    )
    tok.decoder = decoders.Sequence(
        [decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True), decoders.ByteFallback(), decoders.Fuse()]
    )
    eos_id = proto.trainer_spec.eos_id
    tok.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", eos_id)]
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=sentinels or None,
        model_max_length=model_max_length,
    )
    _check_sentinel_layout(hf, len(pieces), extra_ids)
    return hf


def _bpe_merges(pieces: list[tuple[str, float]], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Merges for a SentencePiece BPE vocabulary: every split of a piece into two known pieces, ranked
    by the merged piece's id (SentencePiece BPE ids follow merge order), then by the parts' ids."""
    merges = []
    for piece, _ in pieces:
        for i in range(1, len(piece)):
            left, right = piece[:i], piece[i:]
            if left in vocab and right in vocab:
                merges.append((vocab[piece], vocab[left], vocab[right], left, right))
    merges.sort()
    return [(left, right) for _, _, _, left, right in merges]


def _check_sentinel_layout(hf: Any, n_pieces: int, extra_ids: int) -> None:
    if extra_ids == 0:
        return
    first = hf.convert_tokens_to_ids("<extra_id_0>")
    if first != n_pieces + extra_ids - 1:
        raise AssertionError(f"sentinel layout: <extra_id_0> has id {first}, expected {n_pieces + extra_ids - 1}")


def _ordered_sentinels(extra_ids: int) -> list[str]:
    """Sentinels in id order: <extra_id_N-1> first, so <extra_id_0> takes the top id."""
    return [f"<extra_id_{i}>" for i in range(extra_ids - 1, -1, -1)]


def evaluate_tokenizer(tokenizer: Any, lines: list[str]) -> dict[str, float]:
    """Vocabulary size, unknown-token rate and mean tokens per sentence on ``lines`` (no special tokens)."""
    enc = tokenizer(lines, add_special_tokens=False)["input_ids"]
    lengths = [len(ids) for ids in enc]
    total = sum(lengths)
    unk = tokenizer.unk_token_id
    n_unk = sum(ids.count(unk) for ids in enc) if unk is not None else 0
    return {
        "vocab_size": len(tokenizer),
        "unk_rate": n_unk / total if total else 0.0,
        "mean_tokens": statistics.fmean(lengths) if lengths else 0.0,
        "sentences": len(lines),
    }


def train_tokenizer(recipe: TokenizerRecipe, reporter: Reporter | None = None) -> TokenizerResult:
    """Train, save and report a tokenizer as the recipe says.

    Raises:
        FinsentError: unusable input, or a vocabulary too large for the corpus.
    """
    import sentencepiece as spm
    from transformers import AutoTokenizer

    reporter = reporter or NullReporter()
    files, heldout = _inputs(recipe)
    n_pieces = recipe.vocab_size - recipe.extra_ids
    model = io.BytesIO()
    reporter.log(f"training a {recipe.model_type} SentencePiece model: {n_pieces} pieces + {recipe.extra_ids} sentinels")
    spm.set_random_generator_seed(recipe.seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(files, reporter),
            model_writer=model,
            model_type=recipe.model_type,
            vocab_size=n_pieces,
            pad_id=0,
            eos_id=1,
            unk_id=2,
            bos_id=-1,
            byte_fallback=recipe.byte_fallback,
            character_coverage=recipe.character_coverage,
            input_sentence_size=recipe.input_sentence_size,
            shuffle_input_sentence=True,
            max_sentence_length=recipe.max_sentence_length,
            num_threads=recipe.num_threads,
            minloglevel=2,
        )
    except RuntimeError as exc:
        msg = str(exc).splitlines()[-1] if str(exc) else exc.__class__.__name__
        raise FinsentError(f"sentencepiece: {msg} (lower vocab_size or give more text)") from None
    hf = build_hf_tokenizer(model.getvalue(), recipe.extra_ids, recipe.model_max_length)

    report: dict[str, Any] = {"model_type": recipe.model_type, "byte_fallback": recipe.byte_fallback}
    with atomic_dir(recipe.output_dir) as tmp:
        (tmp / "spiece.model").write_bytes(model.getvalue())
        hf.save_pretrained(str(tmp))
        loaded = AutoTokenizer.from_pretrained(str(tmp))
        if heldout is not None:
            lines = [line for _, line in iter_lines(heldout) if line.strip()][:5000]
            report["heldout"] = str(heldout)
            report["finsent"] = evaluate_tokenizer(loaded, lines)
            ref = _reference(recipe.reference, reporter)
            if ref is not None:
                report["reference"] = {"name": recipe.reference, **evaluate_tokenizer(ref, lines)}
        atomic_write_json(tmp / "report.json", report)
        write_resolved_recipe(recipe, tmp)
    return TokenizerResult(recipe.output_dir, report)


def _reference(name: str | None, reporter: Reporter) -> Any:
    if not name:
        return None
    from transformers import AutoTokenizer

    from finsent_cli.core.models.hub import resolve_model_path

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(name))
    except (FinsentError, OSError, ValueError) as exc:
        reporter.warn(f"reference tokenizer '{name}' not available offline ({exc.__class__.__name__}); skipped")
        return None
