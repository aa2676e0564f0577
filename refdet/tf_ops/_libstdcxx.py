"""libstdc++'s ``std::priority_queue`` and ``std::sort``, transliterated: the order TF's kernels give
to elements that compare equal.

TF's Linux wheels are built against libstdc++. Where a kernel's comparator leaves ties open
(``CombinedNonMaxSuppression`` orders its per-class queue and its merge by score only), the order of
equal scores is whatever these algorithms produce from the input order: deterministic, but neither
"lowest index first" nor stable. They are reproduced here step by step (``bits/stl_heap.h``:
``__push_heap``, ``__adjust_heap``, ``__make_heap``; ``bits/stl_algo.h``: ``__introsort_loop``,
``__move_median_to_first``, ``__unguarded_partition``, ``__final_insertion_sort`` with its
threshold of 16), on a Python list with a strict-weak-order ``less(a, b)``.
"""
from __future__ import annotations

_THRESHOLD = 16


def push_heap(h, item, less):
    """``c.push_back(item); std::push_heap(c.begin(), c.end(), less)``."""
    h.append(item)
    _sift_up(h, len(h) - 1, 0, item, less)


def _sift_up(h, hole, top, value, less):
    parent = (hole - 1) // 2
    while hole > top and less(h[parent], value):
        h[hole] = h[parent]
        hole = parent
        parent = (hole - 1) // 2
    h[hole] = value


def _adjust_heap(h, first, hole, n, value, less):
    """``std::__adjust_heap`` on ``h[first:first + n]``: the hole walks down to a leaf (the right
    child unless it is less than the left), then ``value`` sifts up from there."""
    top = hole
    second = hole
    while second < (n - 1) // 2:
        second = 2 * (second + 1)
        if less(h[first + second], h[first + second - 1]):
            second -= 1
        h[first + hole] = h[first + second]
        hole = second
    if n % 2 == 0 and second == (n - 2) // 2:
        second = 2 * (second + 1)
        h[first + hole] = h[first + second - 1]
        hole = second - 1
    parent = (hole - 1) // 2
    while hole > top and less(h[first + parent], value):
        h[first + hole] = h[first + parent]
        hole = parent
        parent = (hole - 1) // 2
    h[first + hole] = value


def pop_heap(h, less):
    """``top = c.front(); std::pop_heap(c.begin(), c.end(), less); c.pop_back()``; returns top."""
    top = h[0]
    value = h.pop()
    if h:
        _adjust_heap(h, 0, 0, len(h), value, less)
    return top


def _heap_sort(a, first, last, less):
    """``std::__partial_sort(first, last, last)``: make_heap then sort_heap (introsort's fallback)."""
    n = last - first
    if n < 2:
        return
    parent = (n - 2) // 2
    while True:
        _adjust_heap(a, first, parent, n, a[first + parent], less)
        if parent == 0:
            break
        parent -= 1
    while last - first > 1:
        last -= 1
        value = a[last]
        a[last] = a[first]
        _adjust_heap(a, first, 0, last - first, value, less)


def _move_median_to_first(a, result, i, j, k, less):
    if less(a[i], a[j]):
        if less(a[j], a[k]):
            a[result], a[j] = a[j], a[result]
        elif less(a[i], a[k]):
            a[result], a[k] = a[k], a[result]
        else:
            a[result], a[i] = a[i], a[result]
    elif less(a[i], a[k]):
        a[result], a[i] = a[i], a[result]
    elif less(a[j], a[k]):
        a[result], a[k] = a[k], a[result]
    else:
        a[result], a[j] = a[j], a[result]


def _unguarded_partition(a, first, last, pivot, less):
    while True:
        while less(a[first], a[pivot]):
            first += 1
        last -= 1
        while less(a[pivot], a[last]):
            last -= 1
        if not first < last:
            return first
        a[first], a[last] = a[last], a[first]
        first += 1


def _introsort_loop(a, first, last, depth, less):
    while last - first > _THRESHOLD:
        if depth == 0:
            _heap_sort(a, first, last, less)
            return
        depth -= 1
        mid = first + (last - first) // 2
        _move_median_to_first(a, first, first + 1, mid, last - 1, less)
        cut = _unguarded_partition(a, first + 1, last, first, less)
        _introsort_loop(a, cut, last, depth, less)
        last = cut


def _linear_insert(a, i, less):
    value = a[i]
    j = i - 1
    while less(value, a[j]):
        a[i] = a[j]
        i = j
        j -= 1
    a[i] = value


def _insertion_sort(a, first, last, less):
    for i in range(first + 1, last):
        if less(a[i], a[first]):
            value = a[i]
            a[first + 1:i + 1] = a[first:i]
            a[first] = value
        else:
            _linear_insert(a, i, less)


def sort(a, less):
    """``std::sort(a.begin(), a.end(), less)`` in place (introsort, then a final insertion sort)."""
    n = len(a)
    if n < 2:
        return
    _introsort_loop(a, 0, n, 2 * (n.bit_length() - 1), less)
    if n > _THRESHOLD:
        _insertion_sort(a, 0, _THRESHOLD, less)
        for i in range(_THRESHOLD, n):
            _linear_insert(a, i, less)
    else:
        _insertion_sort(a, 0, n, less)
