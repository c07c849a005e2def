"""Sentence embeddings read off a classifier's output layer (core.inference.embed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finsent_cli.core.inference.embed import probs_and_embeddings
from finsent_cli.core.inference.loading import load_classifier
from finsent_cli.core.runs import DEFAULT_MODEL
from finsent_cli.errors import FinsentError

TEXTS = ["Profit rose 20% on strong demand", "Shares fell after the warning", "The company is based in Oslo", "Q3 sales flat"]


@pytest.fixture(scope="module")
def clf():
    return load_classifier(DEFAULT_MODEL)


def test_probabilities_are_the_classifiers_and_rows_do_not_depend_on_the_batch(clf) -> None:
    ids, _ = clf.encode(TEXTS)
    probs, emb = probs_and_embeddings(clf, ids, batch_size=3)
    np.testing.assert_allclose(probs, clf.probs_from_ids(ids), atol=1e-6)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    alone = np.concatenate([probs_and_embeddings(clf, [x], batch_size=1)[1] for x in ids])
    np.testing.assert_allclose(emb, alone, atol=1e-4)
    assert not np.allclose(emb[0], emb[1])


def test_the_embedding_is_what_the_output_layer_reads(clf) -> None:
    ids, _ = clf.encode(TEXTS[:2])
    _, emb = probs_and_embeddings(clf, ids)
    head = [m for m in clf.model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 3][-1]
    logits = head(torch.from_numpy(emb)).detach().numpy()
    order = {label: i for i, label in clf.id2label.items()}
    logits = logits[:, [order[label] for label in ("negative", "neutral", "positive")]]
    probs = torch.softmax(torch.from_numpy(logits) / clf.temperature, -1).numpy()
    np.testing.assert_allclose(probs, clf.probs_from_ids(ids), atol=1e-5)


def test_a_model_without_a_class_layer_is_refused(clf) -> None:
    class Stub:
        pass

    stub = type(clf)(Stub(), clf.tokenizer, clf.id2label, clf.max_length, backend="onnx")
    with pytest.raises(FinsentError, match="embeddings need the PyTorch backend, not onnx"):
        probs_and_embeddings(stub, [[101, 102]])
