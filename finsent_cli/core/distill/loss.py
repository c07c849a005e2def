"""The distillation loss: the teacher's softened distribution plus the gold labels where there are some.

After Hinton et al. 2015 ("Distilling the Knowledge in a Neural Network", section 2): the KL divergence
between teacher and student at temperature T is scaled by T² so its gradients keep their size as T
changes; the cross-entropy on labelled examples is added with weight ``1 - alpha``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_loss(
    logits: torch.Tensor,
    soft: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    weights: torch.Tensor | None = None,
    taught: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per example ``alpha * T² * KL(soft || student at T) + (1 - alpha) * CE(student, label)``, the second
    term for labelled examples only, averaged over the batch.

    Every example weighs the same whatever the mix of labelled and corpus texts in its batch (a batch with one
    labelled example does not give it the whole ``1 - alpha``).

    Args:
        logits: the student's class logits, (B, C).
        soft: the teacher's probabilities at ``temperature``, (B, C).
        labels: class ids, (B,); -100 marks an example without a gold label (a corpus text).
        temperature: the softening temperature T.
        alpha: the weight of the soft term.
        weights: class weights of the cross-entropy (per labelled example, the weight of its class), or None.
        taught: (B,) 1.0 where the teacher labelled the example, 0.0 for a labelled example it did not label
            (``distill.teacher_sources``): that one learns from its gold label alone, at full weight. None: all 1.

    Returns:
        The scalar loss.
    """
    logits = logits.float()  # fp32 under autocast too
    log_q = F.log_softmax(logits / temperature, dim=-1)  # (B, C)
    soft = soft.to(logits.dtype)
    kl = (soft * (soft.clamp_min(1e-12).log() - log_q)).sum(dim=-1) * temperature**2  # (B,)
    w = weights.to(logits.device) if weights is not None else None
    ce = F.cross_entropy(logits, labels.clamp_min(0), weight=w, reduction="none") * (labels != -100)  # (B,), 0 for corpus
    if taught is None:
        return (alpha * kl + (1.0 - alpha) * ce).mean()
    a = alpha * taught.to(logits.device, logits.dtype)  # (B,): alpha, or 0 where only the gold label teaches
    return (a * kl + (1.0 - a) * ce).mean()
