"""KV caches that grow in place.

transformers' `DynamicLayer` appends by concatenation, copying the whole cache for every
new token: at batch 16 with a few hundred cached tokens that copy was over a third of a
lab model's decode step on CPU. `GrowingLayer` keeps its keys and values as views into
buffers with spare room along the sequence, so appending writes in place and only a full
buffer (or a cache another operation replaced, e.g. a batch row selection) is copied.
The numbers are the same: only where they are stored changes.
"""

from __future__ import annotations

from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length, added = self.get_seq_length(), key_states.shape[-2]
        if not self._fits(key_states, length + added):
            batch, heads, _, dim = key_states.shape
            room = length + added + max(64, (length + added) // 2)
            keys = key_states.new_empty(batch, heads, room, dim)
            values = value_states.new_empty(batch, heads, room, value_states.shape[-1])
            if length:
                keys[:, :, :length], values[:, :, :length] = self.keys, self.values
            self._key_buffer, self._value_buffer = keys, values
        self._key_buffer[:, :, length : length + added] = key_states
        self._value_buffer[:, :, length : length + added] = value_states
        self.keys = self._key_buffer[:, :, : length + added]
        self.values = self._value_buffer[:, :, : length + added]
        return self.keys, self.values

    def _fits(self, key_states, needed: int) -> bool:
        """Whether the buffer has room and `self.keys` is still its leading part (crop keeps
        that; row selection or trimming makes new tensors, which need a new buffer)."""
        buffer = getattr(self, "_key_buffer", None)
        if buffer is None or needed > buffer.shape[2] or _shape(buffer) != _shape(key_states):
            return False
        keys = self.keys
        return keys.numel() == 0 or (keys.data_ptr() == buffer.data_ptr() and keys.stride() == buffer.stride())


def _shape(tensor) -> tuple[int, int, int]:
    """Batch, heads and head size: everything but the sequence length."""
    return tensor.shape[0], tensor.shape[1], tensor.shape[3]


def new_cache(model_config):
    """An empty DynamicCache for the model, with growing layers where its layers are plain."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model_config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


def filled_cache(model_config, layers):
    """A cache holding the given (keys, values) per layer."""
    cache = new_cache(model_config)
    for layer, (keys, values) in zip(cache.layers, layers):
        layer.update(keys, values)
    return cache
