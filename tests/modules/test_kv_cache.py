"""StaticKVCache: writes at tensor slots, in-place reordering, expansion into new buffers."""

from __future__ import annotations

import torch

from seqlab.modules.kv_cache import StaticKVCache


def test_writes_at_slots_and_allocates_once():
    cache = StaticKVCache(n_layer=2, max_len=5)
    k, v = torch.randn(3, 2, 2, 4), torch.randn(3, 2, 2, 4)  # (B, nh, T, hs)
    keys, values = cache.write(1, k, v, torch.arange(2))
    assert keys.shape == (3, 2, 5, 4) and cache.keys[0] is None
    address = keys.data_ptr()
    k1 = torch.randn(3, 2, 1, 4)
    keys, _ = cache.write(1, k1, k1, torch.tensor([2]))
    assert keys.data_ptr() == address
    assert torch.equal(keys[:, :, :2], k) and torch.equal(keys[:, :, 2:3], k1)
    assert torch.equal(values[:, :, :2], v) and not keys[:, :, 3:].any()


def test_reorder_in_place_or_into_new_buffers():
    cache = StaticKVCache(n_layer=1, max_len=3)
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 3, 1).contiguous()
    cache.write(0, k, k, torch.arange(3))
    address = cache.keys[0].data_ptr()
    same = cache.reorder(torch.tensor([2, 2, 0]))
    assert same.keys[0].data_ptr() == address
    assert same.keys[0][:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    wider = same.reorder(torch.tensor([0, 0, 1, 1, 2, 2]))
    assert wider.keys[0].shape[0] == 6 and wider.keys[0].data_ptr() != address
    assert wider.values[0][:, 0, 0, 0].tolist() == [2.0, 2.0, 2.0, 2.0, 0.0, 0.0]


def test_reorder_of_the_filled_slots_equals_the_full_reorder():
    import torch

    from seqlab.modules.kv_cache import StaticKVCache

    cache = StaticKVCache(2, 6)
    for layer in range(2):
        kv = torch.randn(3, 2, 4, 4)
        cache.write(layer, kv, -kv, torch.arange(4))  # 4 slots written, 2 still zeros
    index = torch.tensor([2, 0, 0])
    expected = [b.index_select(0, index) for b in cache.keys + cache.values]
    out = cache.reorder(index, filled=4)
    assert all(torch.equal(got, want) for got, want in zip(out.keys + out.values, expected, strict=True))
    again = out.reorder(torch.tensor([1, 2, 0]), filled=4)  # back into the first set of buffers
    assert again.keys[0].data_ptr() == cache.keys[0].data_ptr()
    assert torch.equal(again.values[1], expected[3][[1, 2, 0]])
