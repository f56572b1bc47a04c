"""The GNN featuriser: one function for designs and relaxed samples, gradients
through relaxed samples, and shipped weights that did learn the descriptors."""

from __future__ import annotations

import json

import torch

from domains.molecules import graphs as G
from domains.molecules import tasks
from domains.molecules.gnn_featuriser import DESCRIPTORS, GNNFeaturiser, descriptors

SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "CC(=O)Nc1ccc(O)cc1"]


def featuriser() -> GNNFeaturiser:
    return GNNFeaturiser(26, tasks.GNN)


def test_designs_and_their_one_hot_graphs_have_the_same_features_and_slots_do_not_matter():
    f = featuriser()
    x = G.encode(SMILES, 26)
    assert torch.allclose(f(SMILES), f.relaxed(G.one_hot(x)))
    order = torch.randperm(26, generator=torch.Generator().manual_seed(0))
    shuffled = G.Graphs(x.nodes[:, order], x.edges[:, order][:, :, order])
    assert torch.allclose(f.relaxed(G.one_hot(shuffled)), f(SMILES), atol=1e-5)  # a graph, not a slot order


def test_the_feasibility_model_reads_the_appended_hazards_only():
    f = featuriser()
    x = f(["CC(C)(C)(C)C", "CCO.C"])
    assert x[:, f.hazard_columns].tolist() == [[1, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1, 1]]


def test_relaxed_features_carry_gradients_to_atoms_and_bonds():
    soft = G.one_hot(G.encode(SMILES, 26))
    nodes, edges = soft.nodes.requires_grad_(), soft.edges.requires_grad_()
    featuriser().relaxed(G.SoftGraphs(nodes, edges)).sum().backward()
    assert nodes.grad.abs().sum() > 0 and edges.grad[..., 1:].abs().sum() > 0


def test_the_shipped_weights_predict_descriptors_of_molecules_they_never_saw():
    report = json.loads(tasks.GNN.with_suffix(".json").read_text())
    assert sum(report["held_out_r2"].values()) / len(DESCRIPTORS) > 0.75, report["held_out_r2"]
    reference = tasks.reference_smiles()[-200:]  # MOSES molecules, through the shipped weights as a task loads them
    net = featuriser().net
    with torch.no_grad():
        predicted = net.head(net(G.one_hot(G.encode(reference, 26))))
    truth = descriptors(reference)
    for i, name in enumerate(DESCRIPTORS):
        corr = torch.corrcoef(torch.stack([predicted[:, i], truth[:, i]]))[0, 1]
        assert corr > 0.6, (name, float(corr))


def test_a_spec_picks_the_features_by_task_parameter_and_unknown_ones_are_refused():
    import pytest

    from domains.molecules.featuriser import MoleculeFeaturiser
    from domains.molecules.morgan_featuriser import MorganFeaturiser
    from domains.tasks import get_task

    assert isinstance(get_task("qed").featuriser, GNNFeaturiser)
    assert isinstance(get_task("qed", features="morgan").featuriser, MorganFeaturiser)
    assert isinstance(get_task("qed", features="environments").featuriser, MoleculeFeaturiser)
    with pytest.raises(ValueError, match="takes only the parameter features; got colour"):
        get_task("qed", colour="red")
    with pytest.raises(ValueError, match="features must be one of gnn, morgan, environments"):
        get_task("qed", features="ecfp")
