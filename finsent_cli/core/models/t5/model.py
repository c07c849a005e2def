"""The T5 encoder-decoder: stacks, training forward, greedy generation and constrained target scoring.

After Raffel et al. 2020 (arXiv 1910.10683) and the compact layouts of nanoT5 and torchtune; decoding
optionally uses slim attention (Graef & Wasielewski 2025, arXiv 2503.05840), see ``cache.py``.

The state dict uses the Hugging Face T5 key names (``shared.weight``,
``encoder.block.0.layer.0.SelfAttention.q.weight``, ``lm_head.weight``, ...); ``checkpoint.py``
reads and writes Hugging Face folders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import DecoderCache, choose_mode, resolve_mode
from .config import FinT5Config
from .layers import ATTENTION_IMPLS, FeedForward, RMSNorm, T5Attention, T5Block


def _where_allowed(bias: Tensor, allowed: Tensor | None) -> Tensor:
    """Fold a boolean mask into an additive bias: disallowed entries become the dtype's minimum.

    ``torch.where`` rather than adding a -inf mask so that two masks never overflow to -inf, and a
    fully masked row (all padding) gives a uniform softmax instead of NaN.
    """
    if allowed is None:
        return bias
    return torch.where(allowed, bias, torch.finfo(bias.dtype).min)


def _padding_mask(attention_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """(B, S) 1/0 mask -> (B, 1, 1, S) additive mask, or None."""
    if attention_mask is None:
        return None
    zeros = torch.zeros(attention_mask.shape, dtype=dtype, device=attention_mask.device)
    return _where_allowed(zeros, attention_mask.bool())[:, None, None, :]  # (B, 1, 1, S)


class T5Stack(nn.Module):
    """Encoder or decoder stack; the position bias is computed once by block 0 and shared by all blocks."""

    def __init__(self, cfg: FinT5Config, is_decoder: bool) -> None:
        super().__init__()
        self.is_decoder = is_decoder
        n_layers = cfg.num_decoder_layers if is_decoder else cfg.num_layers
        self.block = nn.ModuleList(T5Block(cfg, is_decoder, has_relative_bias=(i == 0)) for i in range(n_layers))
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def _self_mask(self, q_len: int, k_len: int, q_offset: int, key_mask: Tensor | None) -> Tensor:
        """Relative bias + causal (decoder) + key padding, as one additive mask (B|1, H, Tq, Tk)."""
        bias = self.block[0].self_attn.compute_bias(q_len, k_len, q_offset)  # (1, H, Tq, Tk)
        allowed = None
        if self.is_decoder:
            q_pos = torch.arange(q_offset, q_offset + q_len, device=bias.device)[:, None]
            k_pos = torch.arange(k_len, device=bias.device)[None, :]
            allowed = (k_pos <= q_pos)[None, None]  # (1, 1, Tq, Tk)
        if key_mask is not None:
            pad = key_mask.bool()[:, None, None, :]  # (B, 1, 1, Tk)
            allowed = pad if allowed is None else allowed & pad
        return _where_allowed(bias, allowed)

    def forward(
        self,
        x: Tensor,
        attention_mask: Tensor | None = None,
        enc: Tensor | None = None,
        enc_attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Cache-free pass (encoder, or teacher-forced decoder).

        Args:
            x: (B, T, d_model) token embeddings.
            attention_mask: (B, T) 1 for real tokens, 0 for padding.
            enc: (B, S, d_model) encoder output (decoder only).
            enc_attention_mask: (B, S) encoder padding mask (decoder only).

        Returns:
            (B, T, d_model) normalized hidden states.
        """
        T = x.shape[1]
        mask = self._self_mask(T, T, 0, attention_mask)
        enc_mask = _padding_mask(enc_attention_mask, x.dtype) if self.is_decoder else None
        h = self.dropout(x)
        for block in self.block:
            h = block(h, mask, enc, enc_mask)
        return self.dropout(self.final_layer_norm(h))

    def forward_cached(self, x: Tensor, cache: DecoderCache) -> Tensor:
        """Decoder pass over new positions that reads and extends ``cache``.

        Args:
            x: (B, Tq, d_model) embeddings of the new positions.
            cache: the call's cache; ``cache.length`` grows by Tq.

        Returns:
            (B, Tq, d_model) normalized hidden states.
        """
        start, Tq = cache.length, x.shape[1]
        if start + Tq > cache.max_len:
            raise ValueError(f"cache holds {cache.max_len} positions, asked for {start + Tq}")
        mask = self._self_mask(Tq, start + Tq, start, None)  # (1, H, Tq, T)
        h = x
        for i, block in enumerate(self.block):
            sa, ca = block.self_attn, block.cross_attn
            y = block.layer[0].layer_norm(h)
            if cache.slim_self:
                h = h + sa.self_attention_slim(y, mask, cache.keys[i], start)
            else:
                h = h + sa.self_attention_full(y, mask, cache.keys[i], cache.values[i], start)
            y = block.layer[1].layer_norm(h)
            if cache.slim_cross:
                h = h + ca.cross_attention_slim(y, cache.cross_mask, cache.enc)
            else:
                h = h + ca.cross_attention_full(y, cache.cross_mask, cache.cross_keys[i], cache.cross_values[i])
            h = h + block.layer[2](h)
        cache.length = start + Tq
        return self.final_layer_norm(h)


@dataclass
class Seq2SeqOutput:
    """Output of ``FinT5ForConditionalGeneration.forward``.

    Attributes:
        logits: (B, T, vocab) decoder logits.
        loss: mean token cross-entropy over labels != -100, or None without labels.
        encoder_hidden_states: (B, S, d_model) encoder output.
    """

    logits: Tensor
    loss: Tensor | None
    encoder_hidden_states: Tensor


class FinT5ForConditionalGeneration(nn.Module):
    """T5 encoder-decoder with an LM head, Hugging Face-compatible weights and slim-attention decoding.

    Args:
        cfg: model config (see ``config.py`` for named sizes).
    """

    def __init__(self, cfg: FinT5Config) -> None:
        super().__init__()
        self.config = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = T5Stack(cfg, is_decoder=False)
        self.decoder = T5Stack(cfg, is_decoder=True)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.shared.weight
        self.reset_parameters()

    # ------------------------------------------------------------------ setup
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """T5 initialisation (Mesh TensorFlow stds, as used by nanoT5): q.k needs no Dh^-0.5 scale
        because W_q carries it; an untied LM head gets std d_model^-0.5 so initial logits are O(1)."""
        cfg, f = self.config, self.config.initializer_factor
        nn.init.normal_(self.shared.weight, std=f * 1.0)
        if not cfg.tie_word_embeddings:
            nn.init.normal_(self.lm_head.weight, std=f * cfg.d_model**-0.5)
        for module in self.modules():
            if isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
            elif isinstance(module, T5Attention):
                nn.init.normal_(module.q.weight, std=f * (cfg.d_model * cfg.d_kv) ** -0.5)
                nn.init.normal_(module.k.weight, std=f * cfg.d_model**-0.5)
                nn.init.normal_(module.v.weight, std=f * cfg.d_model**-0.5)
                nn.init.normal_(module.o.weight, std=f * cfg.inner_dim**-0.5)
                if module.has_relative_bias:
                    nn.init.normal_(module.relative_attention_bias.weight, std=f * cfg.d_model**-0.5)
            elif isinstance(module, FeedForward):
                for name in ("wi", "wi_0", "wi_1"):
                    if hasattr(module, name):
                        nn.init.normal_(getattr(module, name).weight, std=f * cfg.d_model**-0.5)
                nn.init.normal_(module.wo.weight, std=f * cfg.d_ff**-0.5)

    def set_attention_impl(self, impl: str) -> None:
        """Choose the attention kernel for every layer: ``"sdpa"`` (default) or ``"ref"``.

        Raises:
            ValueError: unknown name.
        """
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"unknown attention impl {impl!r}; choose one of {sorted(ATTENTION_IMPLS)}")
        for module in self.modules():
            if isinstance(module, T5Attention):
                module.impl = impl

    @property
    def dtype(self) -> torch.dtype:
        return self.shared.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.shared.weight.device

    # ------------------------------------------------------------------ forward
    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Encoder output E, (B, S, d_model), for (B, S) token ids."""
        return self.encoder(self.shared(input_ids), attention_mask)

    def _lm_logits(self, h: Tensor) -> Tensor:
        if self.config.scale_decoder_outputs:
            h = h * self.config.d_model**-0.5  # original T5: tied embeddings, rescaled output
        return self.lm_head(h)  # (B, T, vocab)

    def shift_right(self, labels: Tensor) -> Tensor:
        """Teacher-forcing decoder inputs: start token, then labels[:-1]; -100 becomes the pad id."""
        shifted = labels.new_full(labels.shape, self.config.decoder_start_token_id)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == -100, self.config.pad_token_id)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        labels: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        encoder_outputs: Tensor | None = None,
    ) -> Seq2SeqOutput:
        """Teacher-forced forward pass.

        Args:
            input_ids: (B, S) encoder token ids (not needed when ``encoder_outputs`` is given).
            attention_mask: (B, S) 1 for tokens, 0 for padding.
            decoder_input_ids: (B, T) decoder inputs; derived from ``labels`` by ``shift_right`` if None.
            labels: (B, T) targets, -100 where ignored.
            decoder_attention_mask: (B, T) optional decoder padding mask.
            encoder_outputs: (B, S, d_model) precomputed encoder output.

        Returns:
            ``Seq2SeqOutput`` with logits (B, T, vocab), loss (mean over labels != -100) and encoder states.

        Raises:
            ValueError: when neither decoder inputs nor labels, or neither input ids nor encoder outputs, are given.
        """
        if encoder_outputs is None:
            if input_ids is None:
                raise ValueError("give input_ids or encoder_outputs")
            encoder_outputs = self.encode(input_ids, attention_mask)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("give decoder_input_ids or labels")
            decoder_input_ids = self.shift_right(labels)
        h = self.decoder(self.shared(decoder_input_ids), decoder_attention_mask, encoder_outputs, attention_mask)
        logits = self._lm_logits(h)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        return Seq2SeqOutput(logits=logits, loss=loss, encoder_hidden_states=encoder_outputs)

    # ------------------------------------------------------------------ cached decoding
    def new_cache(
        self,
        enc: Tensor,
        attention_mask: Tensor | None,
        max_len: int,
        mode: str = "auto",
        group: int = 1,
    ) -> DecoderCache:
        """Allocate the decoder cache for one call.

        Args:
            enc: (Be, S, d_model) encoder output.
            attention_mask: (Be, S) encoder padding mask or None.
            max_len: decoder positions to hold.
            mode: ``"auto"`` (:func:`~.cache.choose_mode` by batch and lengths), ``"slim"`` or ``"full"``.
            group: decoder rows per encoder row (``score_targets`` decodes several targets per input).

        Returns:
            An empty ``DecoderCache``; full mode already holds each layer's cross-attention K/V.
        """
        cfg = self.config
        Be, S, _ = enc.shape
        auto = mode == "auto"
        if auto:
            mode = choose_mode(Be * group, S, max_len)
        slim_self, slim_cross = resolve_mode(cfg, mode, quiet=auto)
        B, L = Be * group, cfg.num_decoder_layers
        keys = enc.new_empty(L, B, max_len, cfg.inner_dim)  # (L, B, Tmax, H*Dh)
        values = None if slim_self else torch.empty_like(keys)
        cross_mask = _padding_mask(attention_mask, enc.dtype)
        if cross_mask is None:
            cross_mask = enc.new_zeros(Be, 1, 1, S)
        if slim_cross:
            return DecoderCache(keys, values, enc, None, None, cross_mask)
        enc_rows = enc.repeat_interleave(group, dim=0)  # (B, S, d_model)
        cross_k = enc.new_empty(L, B, cfg.num_heads, S, cfg.d_kv)  # (L, B, H, S, Dh)
        cross_v = torch.empty_like(cross_k)
        for i, block in enumerate(self.decoder.block):
            ca = block.cross_attn
            cross_k[i] = ca._heads(ca.k(enc_rows))  # (B, H, S, Dh)
            cross_v[i] = ca._heads(ca.v(enc_rows))  # (B, H, S, Dh)
        return DecoderCache(keys, values, None, cross_k, cross_v, cross_mask.repeat_interleave(group, dim=0))

    def decode(self, decoder_input_ids: Tensor, cache: DecoderCache) -> Tensor:
        """Logits (B, Tq, vocab) for new decoder positions, extending ``cache``."""
        return self._lm_logits(self.decoder.forward_cached(self.shared(decoder_input_ids), cache))

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        max_new_tokens: int = 32,
        cache: str = "auto",
        stop_on_eos: bool = True,
        encoder_outputs: Tensor | None = None,
    ) -> Tensor:
        """Greedy decoding.

        Args:
            input_ids: (B, S) encoder ids.
            attention_mask: (B, S) encoder padding mask.
            max_new_tokens: most tokens to generate per row.
            cache: ``"auto"`` (picked by batch and source length), ``"slim"`` (K-only self-attention,
                E-only cross-attention) or ``"full"``.
            stop_on_eos: stop a row at EOS (later positions get the pad id) and stop when all rows have.
            encoder_outputs: (B, S, d_model) precomputed encoder output (then ``input_ids`` is unused).

        Returns:
            (B, 1 + n) token ids starting with the decoder start token, as Hugging Face ``generate``.

        Raises:
            ValueError: bad ``max_new_tokens`` or cache mode, or no input.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        cfg = self.config
        enc = encoder_outputs if encoder_outputs is not None else self.encode(input_ids, attention_mask)
        state = self.new_cache(enc, attention_mask, max_new_tokens, cache)
        B = enc.shape[0]
        tokens = torch.full((B, 1), cfg.decoder_start_token_id, dtype=torch.long, device=enc.device)
        done = torch.zeros(B, dtype=torch.bool, device=enc.device)
        for _ in range(max_new_tokens):
            nxt = self.decode(tokens[:, -1:], state)[:, -1].argmax(-1)  # (B,)
            if stop_on_eos:
                nxt = nxt.masked_fill(done, cfg.pad_token_id)
                done = done | (nxt == cfg.eos_token_id)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            if stop_on_eos and bool(done.all()):
                break
        return tokens

    @torch.no_grad()
    def score_targets(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        targets: list[list[int]],
        *,
        cache: str = "auto",
        length_normalize: bool = False,
    ) -> Tensor:
        """Log-probability of each fixed target sequence for each input (text-to-text classification).

        All targets are decoded for every input in one teacher-forced pass; with the slim cache the
        encoder output is stored once per input and shared by its n targets.

        Args:
            input_ids: (B, S) encoder ids.
            attention_mask: (B, S) encoder padding mask or None.
            targets: n token-id lists (include the EOS id if it should be scored).
            cache: ``"auto"``, ``"slim"`` or ``"full"``.
            length_normalize: divide each sum by the target length.

        Returns:
            (B, n) float32 sums of token log-probabilities.

        Raises:
            ValueError: no targets, or an empty target.
        """
        if not targets or any(len(t) == 0 for t in targets):
            raise ValueError("score_targets needs at least one non-empty target sequence")
        n, T = len(targets), max(len(t) for t in targets)
        enc = self.encode(input_ids, attention_mask)
        B = enc.shape[0]
        labels = torch.full((n, T), -100, dtype=torch.long, device=enc.device)
        for j, t in enumerate(targets):
            labels[j, : len(t)] = torch.tensor(t, dtype=torch.long)
        labels = labels.repeat(B, 1)  # (B*n, T), row b*n + j = input b, target j
        state = self.new_cache(enc, attention_mask, T, cache, group=n)
        logp = torch.log_softmax(self.decode(self.shift_right(labels), state).float(), dim=-1)  # (B*n, T, V)
        keep = labels != -100
        tok = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * keep  # (B*n, T)
        scores = tok.sum(-1)
        if length_normalize:
            scores = scores / keep.sum(-1)
        return scores.view(B, n)  # (B, n)
