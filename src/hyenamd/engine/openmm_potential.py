"""OpenMM potential: ``MLPotential('hyenamd', model=path).createSystem(topology)``, on ``openmm.PythonForce``.

Two front ends, one implementation:

* **openmm-ml** (``openmmml``, when installed): hyenamd registers
  :class:`HyenaPotentialImplFactory` in the ``openmmml.potentials`` entry-point group
  (``pyproject.toml``), so ``openmmml.MLPotential('hyenamd', model=path)`` finds it. The factory
  and impl follow openmm-ml's ``MLPotentialImplFactory`` / ``MLPotentialImpl`` interface by duck
  typing (``createImpl``; ``addForces(topology, system, atoms, forceGroup, **args)``,
  ``getSupportedEmbeddings``, ``getMLLongRange``) rather than by subclassing: openmm-ml
  imports every registered plugin while it is itself being imported, so a plugin that imported
  ``openmmml`` at module level would break that import.
* **fallback** :class:`MLPotential` (this module), for installations without openmm-ml: the
  same ``createSystem(topology)`` and ``createMixedSystem(topology, system, atoms)`` (mechanical
  embedding) for the ``'hyenamd'`` potential. It does not implement link atoms (the ML region
  must not be covalently bonded to the rest) nor ``interpolate=True``; both raise, naming
  openmm-ml as the way to get them.

The force is a core ``openmm.PythonForce`` (no openmm-torch). Units are converted here at
the boundary: positions and box nm → Å, energy eV → kJ/mol, forces eV/Å → kJ/mol/nm. For a
periodic topology the force uses periodic boundary conditions and reads the box from each
``State``; OpenMM may hand over re-wrapped positions, which the Verlet list handles. The
sequence order is the model's rule (:func:`hyenamd.surrogate.ordering.canonical_order`) applied
to the atoms the force acts on: "topology" uses the topology's chains and residues; "hilbert"
is computed from the positions of the force's first evaluation and kept for the force's
lifetime (a trajectory's energy surface stays smooth; the Hilbert order does not depend on
the lab frame, so a fresh force on a rotated or translated copy gives the same energy).

``model`` (alias ``modelPath``, openmm-ml's name) may be a checkpoint path (then the force can
be serialised with ``XmlSerializer``) or an in-memory module (then the force works but cannot
be serialised). Extra arguments, to ``MLPotential(...)`` or to ``createSystem(...)``:
``device``, ``dtype`` (``"float32"``/``"float64"`` or a torch dtype), openmm-ml's
``precision`` (``'single'``/``'double'``; must agree with ``dtype`` when both are given),
``skin`` (Å), ``order_samples`` (K: average over K orders), ``compile`` (false, true or a
``torch.compile`` backend name: the compiled small-system path of
:mod:`hyenamd.engine.compile_switch`, as ``HyenaCalculator(compile=...)``; a name, not a
callable, since it is stored in the serialised System). Without dtype or precision, the
checkpoint's own dtype is used.

**Serialisation.** The pickle that ``XmlSerializer`` stores holds the checkpoint's *absolute*
path (resolved when the force is built, so a later ``chdir`` does not matter), its sha256
content hash and the settings; deserialising checks that the file still exists and has the
same hash, then reloads it with ``load_model`` (which never runs code from the file).
OpenMM's ``PythonForce`` deserialiser crashes the interpreter (segfault, OpenMM 8.6.1) when the
unpickling callable raises, so the check never raises there: a missing or changed checkpoint
gives a :class:`UnavailableHyenaForce` that warns (``HyenaCheckpointWarning``) at once and
raises its message from the first energy/force evaluation (OpenMM reports it as an
``OpenMMException``). :func:`deserialize_system` wraps ``XmlSerializer.deserialize`` and raises
:class:`~hyenamd.surrogate.checkpoint.CheckpointError` (a Python exception, at deserialisation)
instead.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from hyenamd.dtypes import dtype_name, precision_dtype, resolve_dtype
from hyenamd.engine.adapter import ModelRunner, check_species
from hyenamd.errors import check_finite_outputs
from hyenamd.system import Labels
from hyenamd.units import EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

__all__ = [
    "HyenaCheckpointWarning",
    "HyenaForce",
    "HyenaPotentialImpl",
    "HyenaPotentialImplFactory",
    "MLPotential",
    "UnavailableHyenaForce",
    "deserialize_system",
    "file_sha256",
]


def _dtype(value) -> torch.dtype | None:
    return resolve_dtype(value)


def _dtype_and_precision(dtype, precision) -> torch.dtype | None:
    """The run dtype from ``dtype`` and/or openmm-ml's ``precision`` (they must agree)."""
    a, b = resolve_dtype(dtype), precision_dtype(precision)
    if a is not None and b is not None and a != b:
        raise ValueError(f"dtype={dtype!r} and precision={precision!r} disagree; give one of them")
    return a or b


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HyenaCheckpointWarning(UserWarning):
    """A deserialised hyenamd force could not load its checkpoint (it will raise when evaluated)."""


#: messages of the forces that failed to rebuild since the last :func:`deserialize_system` started
_FAILED: list[str] = []


class UnavailableHyenaForce:
    """What a serialised :class:`HyenaForce` becomes when its checkpoint is missing or changed.

    Unpickling must not raise inside OpenMM (it crashes the interpreter), so this stands in:
    calling it raises :class:`RuntimeError` with ``message`` (OpenMM turns that into an
    ``OpenMMException`` naming the checkpoint). It pickles back to the same record.
    """

    def __init__(self, message: str, record: tuple) -> None:
        self.message, self.record = message, record

    def __call__(self, state):
        raise RuntimeError(self.message)

    def __reduce__(self):
        return (_rebuild_checked, self.record)


def _rebuild_checked(
    source: str,
    sha256: str | None,
    species: list[int],
    labels: tuple | None,
    periodic: bool,
    device: str,
    dtype,
    skin: float,
    order_samples: int = 1,
    compile: bool | str = False,
):
    """Unpickling target of :class:`HyenaForce` (format 2: absolute path + content hash). Never raises."""
    record = (source, sha256, species, labels, periodic, device, dtype, skin, order_samples, compile)
    try:
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"the hyenamd checkpoint {source} named by this serialised OpenMM System does not exist "
                "(moved or deleted?); put it back or rebuild the System with MLPotential('hyenamd', model=...)"
            )
        if sha256 is not None:
            found = file_sha256(source)
            if found != sha256:
                raise ValueError(
                    f"the hyenamd checkpoint {source} changed since this OpenMM System was serialised "
                    f"(sha256 {found[:16]}..., recorded {sha256[:16]}...); rebuild the System from it"
                )
        lab = None if labels is None else Labels(torch.tensor(labels[0]), torch.tensor(labels[1]))
        force = HyenaForce(
            source, np.asarray(species), lab, periodic,
            device=device, dtype=dtype, skin=skin, order_samples=order_samples, compile=compile,
        )  # fmt: skip
        if sha256 is not None:
            force.sha256 = sha256
        return force
    except BaseException as e:  # raising here would crash OpenMM's deserialiser
        message = f"{type(e).__name__}: {e}"
        _FAILED.append(message)
        try:
            warnings.warn(message, HyenaCheckpointWarning, stacklevel=2)
        except BaseException:  # warnings turned into errors (-W error) must not raise here either
            pass
        return UnavailableHyenaForce(message, record)


def _rebuild(
    source: str, species: list[int], labels: tuple | None, periodic: bool, device: str, dtype, skin: float
):
    """Unpickling target of Systems serialised before the hash was recorded (path as given, no hash)."""
    return _rebuild_checked(source, None, species, labels, periodic, device, dtype, skin)


def deserialize_system(xml: str):
    """``openmm.XmlSerializer.deserialize(xml)``, raising ``CheckpointError`` when a hyenamd force cannot load.

    xml: the serialised System (a string). Raises
    :class:`~hyenamd.surrogate.checkpoint.CheckpointError` naming each checkpoint that is missing
    or changed (a Python exception, instead of an error at the first evaluation).
    """
    import openmm

    from hyenamd.surrogate.checkpoint import CheckpointError

    del _FAILED[:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HyenaCheckpointWarning)
        system = openmm.XmlSerializer.deserialize(xml)
    failed, _FAILED[:] = list(_FAILED), []
    if failed:
        raise CheckpointError("; ".join(failed))
    return system


class HyenaForce:
    """The ``PythonForce`` computation: an OpenMM ``State`` → (energy kJ/mol, forces kJ/mol/nm)."""

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        species: np.ndarray,
        labels: Labels | None,
        periodic: bool,
        *,
        device: str | torch.device | None = "cpu",
        dtype: torch.dtype | str | None = None,
        skin: float = 0.5,
        order_samples: int = 1,
        compile: bool | str = False,
    ) -> None:
        if not isinstance(compile, bool | str):  # kept in the serialised System: a name, not a callable
            raise TypeError(
                f"HyenaForce(compile=...) takes true, false or a torch.compile backend name, got {compile!r}"
            )
        self.source = None
        self.sha256: str | None = None
        if isinstance(model, str | os.PathLike):
            from hyenamd.surrogate import load_model

            # absolute, so a later chdir does not change which file a serialised System names
            self.source = os.path.abspath(os.fspath(model))
            model = load_model(self.source, device=device or "cpu", dtype=_dtype(dtype))
            self.sha256 = file_sha256(self.source)
        self.species = np.asarray(species, dtype=np.int64)
        check_species(model, self.species)
        self.labels = labels
        self.periodic = bool(periodic)
        self.settings = {
            "device": str(device or "cpu"),
            "dtype": dtype_name(dtype),
            "skin": float(skin),
            "order_samples": int(order_samples),
            "compile": compile,
        }
        self.runner = ModelRunner(
            model, device=device, dtype=_dtype(dtype), skin=skin, order_samples=order_samples, compile=compile
        )
        self.pbc = np.array([self.periodic] * 3)
        self.orders: torch.Tensor | None = None  # [K, N], fixed at the first evaluation

    def __call__(self, state) -> tuple[float, np.ndarray]:
        import openmm.unit as u

        x = state.getPositions(asNumpy=True).value_in_unit(u.nanometer) * NM_TO_ANGSTROM
        cell = None
        if self.periodic:
            cell = (
                np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(u.nanometer))
                * NM_TO_ANGSTROM
            )
        out = self.runner(x, self.species, cell, self.pbc, labels=self.labels, orders=self.orders)
        check_finite_outputs("hyenamd OpenMM force", energy=out["energy"], forces=out["forces"])
        if self.orders is None:
            self.orders = out["orders"]
        return out["energy"] * EV_TO_KJ_PER_MOL, out["forces"] * EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM

    def __reduce__(self):
        if self.source is None:
            raise TypeError(
                "a HyenaForce built from an in-memory model cannot be pickled; pass model=<checkpoint path> "
                "to make the System serialisable"
            )
        labels = None
        if self.labels is not None:
            labels = (self.labels.residue_index.tolist(), self.labels.chain_index.tolist())
        s = self.settings
        return (
            _rebuild_checked,
            (
                self.source, self.sha256, self.species.tolist(), labels, self.periodic,
                s["device"], s["dtype"], s["skin"], s["order_samples"], s["compile"],
            ),
        )  # fmt: skip


def _topology_labels(atoms: list) -> Labels:
    return Labels(
        residue_index=torch.tensor([a.residue.index for a in atoms]),
        chain_index=torch.tensor([a.residue.chain.index for a in atoms]),
        atom_names=tuple(a.name for a in atoms),
        residue_names=tuple(a.residue.name for a in atoms),
    )


class HyenaPotentialImpl:
    """openmm-ml ``MLPotentialImpl`` for hyenamd models (duck-typed; see the module docstring)."""

    def __init__(
        self,
        name: str = "hyenamd",
        model=None,
        device: str | None = "cpu",
        dtype=None,
        skin: float = 0.5,
        *,
        modelPath: str | os.PathLike | None = None,  # openmm-ml's name
        precision: str | None = None,
        order_samples: int = 1,
        compile: bool | str = False,
    ):
        if model is not None and modelPath is not None and model != modelPath:
            raise ValueError(f"model={model!r} and modelPath={modelPath!r} disagree; give one of them")
        model = model if model is not None else modelPath
        if model is None:
            raise ValueError(
                "MLPotential('hyenamd', model=...) needs model=<checkpoint path or module> (or modelPath=<path>)"
            )
        if isinstance(model, str | os.PathLike):
            if not os.path.exists(model):
                raise FileNotFoundError(f"no hyenamd checkpoint at {model}")
            model = os.path.abspath(os.fspath(model))
        self.name = name
        self.model = model
        self.device, self.dtype, self.skin = device, _dtype_and_precision(dtype, precision), float(skin)
        self.order_samples = int(order_samples)
        self.compile = compile
        self._loaded: nn.Module | None = None

    def _model(self) -> nn.Module | str:
        # a path is handed to HyenaForce as is, so the force stays serialisable
        return self.model

    def addForces(self, topology, system, atoms: Iterable[int] | None, forceGroup: int, **args) -> None:
        import openmm

        all_atoms = list(topology.atoms())
        idx = list(range(len(all_atoms))) if atoms is None else [int(a) for a in atoms]
        chosen = [all_atoms[i] for i in idx]
        missing = [a.index for a in chosen if a.element is None]
        if missing:
            raise ValueError(f"atoms {missing[:10]} have no element (virtual sites?); hyenamd needs elements")
        species = np.array([a.element.atomic_number for a in chosen], dtype=np.int64)
        periodic = topology.getPeriodicBoxVectors() is not None
        dtype = self.dtype
        if args.get("dtype") is not None or args.get("precision") is not None:
            dtype = _dtype_and_precision(args.get("dtype"), args.get("precision"))
        compute = HyenaForce(
            self._model(), species, _topology_labels(chosen), periodic,
            device=args.get("device", self.device), dtype=dtype, skin=float(args.get("skin", self.skin)),
            order_samples=int(args.get("order_samples", self.order_samples)),
            compile=args.get("compile", self.compile),
        )  # fmt: skip
        force = openmm.PythonForce(compute)
        force.setName("HyenaForce")
        force.setForceGroup(int(forceGroup))
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(idx)
        system.addForce(force)

    def getSupportedEmbeddings(self) -> list[str]:
        return []

    def getMLLongRange(self) -> bool:
        """False: the model computes no Ewald/PME electrostatics (its global block is a learned
        convolution over the ML atoms, not a periodic Coulomb sum), so mechanical embedding keeps
        the force field's long-range terms between periodic images of the ML region."""
        return False

    def createMixedSystem(self, *a, **k):
        raise NotImplementedError("hyenamd has no potential-specific embedding; use 'mechanical'")


class HyenaPotentialImplFactory:
    """openmm-ml ``MLPotentialImplFactory`` registered as ``hyenamd`` (entry point ``openmmml.potentials``)."""

    def createImpl(self, name: str, **args) -> HyenaPotentialImpl:
        return HyenaPotentialImpl(name, **args)


# ---------------------------------------------------------------------- fallback front end
class MLPotential:
    """openmm-ml's ``MLPotential`` API for the ``'hyenamd'`` potential, without openmm-ml.

    ``MLPotential('hyenamd', model=path).createSystem(topology)``;
    ``createMixedSystem(topology, mm_system, atoms)`` (mechanical embedding, no link atoms).
    """

    def __init__(self, name: str = "hyenamd", **args) -> None:
        if name != "hyenamd":
            raise ValueError(
                f"this fallback MLPotential only provides 'hyenamd', not {name!r}; install openmm-ml"
            )
        self._impl = HyenaPotentialImplFactory().createImpl(name, **args)

    def createSystem(self, topology, removeCMMotion: bool = True, **args):
        import openmm

        system = openmm.System()
        if topology.getPeriodicBoxVectors() is not None:
            system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
        for atom in topology.atoms():
            system.addParticle(0 if atom.element is None else atom.element.mass)
        self._impl.addForces(topology, system, None, 0, **args)
        if removeCMMotion:
            system.addForce(openmm.CMMotionRemover())
        return system

    def createMixedSystem(
        self, topology, system, atoms: Iterable[int], removeConstraints: bool = True,
        forceGroup: int = 0, interpolate: bool = False, **args,
    ):  # fmt: skip
        import openmm

        if interpolate:
            raise NotImplementedError("interpolate=True needs openmm-ml (pip install openmmml)")
        ml = sorted({int(a) for a in atoms})
        ml_set = set(ml)
        links = [
            (b.atom1.index, b.atom2.index)
            for b in topology.bonds()
            if (b.atom1.index in ml_set) != (b.atom2.index in ml_set)
        ]
        if links:
            raise ValueError(
                f"the ML region is bonded to the rest through {len(links)} bonds (e.g. {links[0]}); link atoms "
                "need openmm-ml (pip install openmmml)"
            )
        new = openmm.XmlSerializer.deserialize(_remove_bonded(openmm.XmlSerializer.serialize(system), ml_set))
        periodic = new.usesPeriodicBoundaryConditions()
        for force in new.getForces():
            if isinstance(force, openmm.NonbondedForce):
                for a in range(len(ml)):
                    for b in range(a):
                        force.addException(ml[a], ml[b], 0.0, 1.0, 0.0, True)
                force.setExceptionsUsePeriodicBoundaryConditions(periodic)
            elif isinstance(force, openmm.CustomNonbondedForce):
                have = {
                    tuple(sorted(force.getExclusionParticles(k))) for k in range(force.getNumExclusions())
                }
                for a in range(len(ml)):
                    for b in range(a):
                        if (ml[b], ml[a]) not in have:
                            force.addExclusion(ml[a], ml[b])
        self._impl.addForces(topology, new, ml, forceGroup, **args)
        if removeConstraints:
            for k in reversed(range(new.getNumConstraints())):
                p1, p2, _ = new.getConstraintParameters(k)
                if p1 in ml_set and p2 in ml_set:
                    new.removeConstraint(k)
        return new


def _remove_bonded(xml: str, ml: set[int]) -> str:
    """Drop every bond, angle, torsion and CMAP term whose atoms all lie in ``ml`` (XML of a System)."""
    root = ET.fromstring(xml)
    for tag, item in (("Bonds", "Bond"), ("Angles", "Angle"), ("Torsions", "Torsion")):
        for group in root.findall(f"./Forces/Force/{tag}"):
            for el in group.findall(item):
                ps = [int(v) for k, v in el.attrib.items() if k[0] in "pab" and k[1:].isdigit()]
                if ps and all(p in ml for p in ps):
                    group.remove(el)
    return ET.tostring(root, encoding="unicode")
