"""The molecule tasks' pretraining path on a user's SMILES file (the shipped
checkpoint's own run is `seiko-bench pretrain osimertinib-mpo`), and a tiny
cell of a molecule task through the runner."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import torch
from matplotlib.image import imread

from benchmarks.cli import main
from domains.molecules import tasks
from domains.molecules.graph_diffusion import GraphDiffusionModel
from domains.molecules.graphs import heavy_atoms
from domains.molecules.oracles import canonical_smiles

torch.set_num_threads(1)
SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "CC(=O)Nc1ccc(O)cc1",
          "O=C(O)c1ccccc1O", "Clc1ccc(Br)cc1F", "CS(=O)(=O)N1CCC1", "C#CC1CC1"]


def test_pretraining_on_a_smiles_file_writes_the_model_its_reference_molecules_and_a_report(tmp_path):
    data = tmp_path / "mine.smi"
    data.write_text("\n".join(SMILES) + "\n")
    out = tmp_path / "model.safetensors"
    report = tasks.pretrain("qed", data=data, out=out, steps=3, molecules=6, fcd_reference=2, report_samples=4,
                            batch_size=4, num_steps=4, d_node=16, d_edge=8, n_layers=1, n_heads=2, gnn_steps=2)
    assert report["data"] == str(data) and report["molecules"] == 6 and report["samples"] == 4
    assert 0 <= report["validity"] <= 1
    model = GraphDiffusionModel.load(out)
    assert model.metadata["pretrain"]["final_nelbo"] == report["final_nelbo"]
    reference = gzip.decompress((tmp_path / tasks.REFERENCE.name).read_bytes()).decode().split()
    assert len(reference) == 6 and set(reference) <= {canonical_smiles(s) for s in SMILES}  # as keys are written
    assert report["model"]["max_atoms"] == max(heavy_atoms(s) for s in reference)  # the largest molecule trained on
    assert (tmp_path / tasks.GNN.name).exists() and report["gnn_featuriser"]["molecules"] == 6


def test_a_cell_draws_its_best_measured_molecules_and_reports_their_diversity(tmp_path):
    spec = tmp_path / "mol.yaml"
    spec.write_text("tasks: [osimertinib-mpo]\nmethods: [best-of-n]\nseeds: [0]\nrounds: [16, 16]\n"
                    "eval_samples: 4\nauc_freq: 8\n")
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--workers", "1", "--no-report"]) == 0
    cell = tmp_path / "out" / "mol" / "osimertinib-mpo" / "best-of-n" / "seed0"
    log = pd.read_csv(cell / "queries.csv")
    best = log[log["charged"] & log["feasible"]].sort_values("reward", ascending=False)
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["top10_diversity"] > 0 and 0 <= metrics["top10_novelty"] <= 1
    picture = imread(cell / "top_designs.png")
    assert picture.shape[1] == 4 * 200 and picture.shape[0] == 160 * -(-min(len(best), 10) // 4)  # a 4-wide grid
    assert len(np.unique(picture.reshape(-1, picture.shape[-1]), axis=0)) > 2  # structures drawn, not a blank page
