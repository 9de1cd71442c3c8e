"""A synthetic population: agent attributes (small-int codes + codebook), home points, contact
layers (CSR), and save/load as parquet (attributes) + safetensors (layers, homes)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch

from populace.engine.data import Data
from populace.engine.storage import IntegrityError, dumps, staged_folder, verify_folder
from populace.populations.contacts import layer_stats
from populace.populations.graphs import csr_layer

#: meta.json's format; 2 added manifest.json (folders of format 1 are refused: save again)
FORMAT_VERSION = 2
KIND = "population"


@dataclass
class Population:
    """N agents.

    Attributes:
        attributes: name → [N] integer codes (int8/int16/int32/int64).
        codebook: name → labels for the coded attributes (code = position); attributes without
            an entry (e.g. ``household``) are plain integer ids.
        layers: name → sparse CSR [N, N] float32 contact weights.
        home: [N, 2] float64 lon/lat, or None.
        meta: JSON-serialisable facts (source, scale, seed, assumptions).
        areas: optional GeoDataFrame of the area polygons (not saved; rebuilt from the source).
    """

    attributes: dict[str, torch.Tensor]
    codebook: dict[str, tuple[str, ...]]
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    home: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    areas: Any = None

    def __post_init__(self) -> None:
        sizes = {k: v.shape for k, v in self.attributes.items()}
        if len({s for s in sizes.values()}) > 1 or any(len(s) != 1 for s in sizes.values()):
            raise ValueError(f"attributes must all be [N]: {sizes}")
        n = self.n
        for name, codes in self.codebook.items():
            if name not in self.attributes:
                raise ValueError(f"codebook entry {name!r} has no attribute")
            a = self.attributes[name]
            if a.numel() and (int(a.min()) < 0 or int(a.max()) >= len(codes)):
                raise ValueError(f"attribute {name!r}: code outside 0..{len(codes) - 1}")
        for name, layer in self.layers.items():
            if layer.layout != torch.sparse_csr or tuple(layer.shape) != (n, n):
                raise ValueError(f"layer {name!r}: must be sparse CSR [{n}, {n}]")
        if self.home is not None and tuple(self.home.shape) != (n, 2):
            raise ValueError(f"home must be [{n}, 2], got {tuple(self.home.shape)}")

    @property
    def n(self) -> int:
        return next(iter(self.attributes.values())).numel() if self.attributes else 0

    def labels(self, name: str) -> list[str]:
        """Per-agent labels of a coded attribute (slow for millions: prefer codes)."""
        if name not in self.codebook:
            raise KeyError(f"no coded attribute {name!r}; coded: {list(self.codebook)}")
        book = self.codebook[name]
        return [book[i] for i in self.attributes[name].tolist()]

    def table(self, decode: bool = True) -> pl.DataFrame:
        """Attributes (+ home lon/lat) as a DataFrame; coded ones as Enum labels if ``decode``."""
        cols = {}
        for name, values in self.attributes.items():
            s = pl.Series(name, values.cpu().numpy())
            if decode and name in self.codebook:
                book = pl.Series(
                    name, list(self.codebook[name]), dtype=pl.Enum(self.codebook[name])
                )
                s = book.gather(s.cast(pl.Int64))
            cols[name] = s
        if self.home is not None:
            cols["lon"] = pl.Series("lon", self.home[:, 0].cpu().numpy())
            cols["lat"] = pl.Series("lat", self.home[:, 1].cpu().numpy())
        return pl.DataFrame(cols)

    def counts(self, *names: str) -> pl.DataFrame:
        """Agents per combination of the named coded attributes (all combinations, 0 if none)."""
        for name in names:
            if name not in self.codebook:
                raise KeyError(f"no coded attribute {name!r}; coded: {list(self.codebook)}")
        sizes = [len(self.codebook[n]) for n in names]
        flat = torch.zeros(self.n, dtype=torch.long)
        for name, size in zip(names, sizes, strict=True):
            flat = flat * size + self.attributes[name].cpu().to(torch.long)
        total = 1
        for s in sizes:
            total *= s
        counts = torch.bincount(flat, minlength=total)
        cols: dict[str, list[str]] = {}
        index = torch.arange(total)
        for name, size in reversed(list(zip(names, sizes, strict=True))):
            cols[name] = [self.codebook[name][i] for i in (index % size).tolist()]
            index = index // size
        return pl.DataFrame({n: cols[n] for n in names} | {"agents": counts.tolist()})

    def data(self, layers: bool = True, homes: bool = False) -> Data:
        """The population as model data (:class:`~populace.engine.Data`): every attribute
        (coded ones as int64 codes of an axis named like them, labelled by the codebook), the
        contact layers by name when ``layers``, and ``home`` ``[N, 2]`` when ``homes``. An id
        attribute named like a layer (``household``) is kept as ``<name>_id``."""
        tensors: dict[str, torch.Tensor] = {}
        for name, values in self.attributes.items():
            if name in self.codebook:
                tensors[name] = values.to(torch.int64)
            else:
                tensors[f"{name}_id" if layers and name in self.layers else name] = values
        if layers:
            tensors.update(self.layers)
        if homes and self.home is not None:
            tensors["home"] = self.home
        return Data(tensors, axes=self.codebook)

    def nbytes(self) -> int:
        """Bytes held by attributes, homes and layers."""
        total = sum(v.numel() * v.element_size() for v in self.attributes.values())
        if self.home is not None:
            total += self.home.numel() * self.home.element_size()
        return total + sum(layer_stats(layer)["bytes"] for layer in self.layers.values())

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``attributes.parquet``, ``tensors.safetensors`` (layers, homes), ``meta.json``
        and ``manifest.json`` (size and sha256 of each file, agents, edges per layer).

        The files are written into a hidden sibling folder and swapped in with one rename
        (:func:`~populace.engine.storage.staged_folder`): a failure or a kill leaves no
        half-written or mixed population. An existing non-empty ``folder`` is refused unless
        ``overwrite`` (and then replaced only if it is a populace output).
        """
        info = {
            "agents": self.n,
            "edges": {name: int(layer.values().numel()) for name, layer in self.layers.items()},
        }
        with staged_folder(folder, kind=KIND, overwrite=overwrite, info=info) as tmp:
            self._write(tmp)
        return Path(folder)

    def _write(self, folder: Path) -> None:
        from safetensors.torch import save_file

        attrs = pl.DataFrame({k: v.cpu().numpy() for k, v in self.attributes.items()})
        attrs.write_parquet(folder / "attributes.parquet")
        tensors = {}
        for name, layer in self.layers.items():
            tensors[f"layer.{name}.crow"] = layer.crow_indices().cpu().contiguous()
            tensors[f"layer.{name}.col"] = layer.col_indices().cpu().contiguous()
            tensors[f"layer.{name}.values"] = layer.values().cpu().contiguous()
        if self.home is not None:
            tensors["home"] = self.home.cpu().contiguous()
        save_file(tensors, str(folder / "tensors.safetensors"))
        meta = {
            "format": FORMAT_VERSION,
            "n": self.n,
            "codebook": {k: list(v) for k, v in self.codebook.items()},
            "attribute_dtypes": {k: str(v.dtype) for k, v in self.attributes.items()},
            "layers": list(self.layers),
            "meta": self.meta,
        }
        (folder / "meta.json").write_text(dumps(meta, indent=1, non_finite="raise"))

    @classmethod
    def load(cls, folder: str | Path) -> Population:
        """Read a population written by :meth:`save` (``areas`` is not restored).

        Every file is checked against ``manifest.json`` first (:func:`verify_folder`), so a
        truncated, damaged or swapped file raises :class:`IntegrityError` naming it.
        """
        folder = Path(folder)
        verify_folder(folder, KIND, "saved population")
        meta = _read(folder / "meta.json", lambda p: json.loads(p.read_text()))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise IntegrityError(f"{folder}: format {found!r}, expected {FORMAT_VERSION}")
        frame = _read(folder / "attributes.parquet", pl.read_parquet)
        tensors = _read(folder / "tensors.safetensors", _load_tensors)
        try:
            n = meta["n"]
            attributes = {
                name: torch.from_numpy(frame[name].to_numpy().copy()).to(
                    _dtype(dtype.removeprefix("torch."))
                )
                for name, dtype in meta["attribute_dtypes"].items()
            }
            layers = {
                name: csr_layer(
                    tensors[f"layer.{name}.crow"],
                    tensors[f"layer.{name}.col"],
                    tensors[f"layer.{name}.values"],
                    n,
                    check_invariants=True,
                )
                for name in meta["layers"]
            }
            population = cls(
                attributes=attributes,
                codebook={k: tuple(v) for k, v in meta["codebook"].items()},
                layers=layers,
                home=tensors.get("home"),
                meta=meta["meta"],
            )
        except (KeyError, TypeError, ValueError, RuntimeError, pl.exceptions.PolarsError) as err:
            raise IntegrityError(f"{folder}: files disagree with meta.json ({err!r})") from None
        if population.n != n:
            raise IntegrityError(f"{folder}: {population.n} agents, meta.json records {n}")
        return population


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _read(path: Path, reader):
    """``reader(path)``, any parser error re-raised as one naming the file."""
    try:
        return reader(path)
    except Exception as err:  # polars, safetensors, json: their messages never name the file
        raise IntegrityError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
