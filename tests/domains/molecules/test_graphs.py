"""Molecules as dense graphs, the graph diffusion model's own rules (the protocol is
tests/domains/test_model_protocol.py), the molecule featuriser, data files and the
generator report."""

from __future__ import annotations

import gzip

import pytest
import torch

from domains.molecules import graphs as G
from domains.molecules import oracles
from domains.molecules.data import read_smiles
from domains.molecules.featuriser import MoleculeFeaturiser, hazards
from domains.molecules.graph_diffusion import GraphDiffusionConfig, GraphDiffusionModel
from domains.molecules.quality import quality, top_designs_metrics
from domains.wheels import DataError

torch.set_num_threads(1)
DRUGS = ["CC(=O)Oc1ccccc1C(=O)O", "Cn1c(=O)c2c(ncn2C)n(C)c1=O", "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "CC(=O)Nc1ccc(O)cc1",
         "O=C(O)c1ccccc1O", "Clc1ccc(Br)cc1F", "CS(=O)(=O)N1CCC1", "C#CC1CC1"]


def tiny(num_steps: int = 6, max_atoms: int = 4, **kw) -> GraphDiffusionModel:
    torch.manual_seed(0)
    return GraphDiffusionModel(GraphDiffusionConfig(max_atoms=max_atoms, num_steps=num_steps, d_node=16, d_edge=8,
                                                    n_layers=1, n_heads=2, **kw))


def test_drugs_survive_encoding_as_kekule_graphs_and_decoding():
    x = G.encode(DRUGS, 16)
    assert x.nodes.shape == (8, 16) and x.edges.shape == (8, 16, 16)
    assert torch.equal(x.edges, x.edges.transpose(1, 2)) and (torch.diagonal(x.edges, dim1=1, dim2=2) == 0).all()
    assert set(x.edges.unique().tolist()) <= {0, 1, 2, 3}  # no aromatic bond type: rings are kekulised
    assert G.decode(x) == [oracles.canonical_smiles(s) for s in DRUGS]


def test_a_graph_rdkit_rejects_is_written_so_that_it_reads_back_as_the_same_invalid_graph():
    nodes = torch.tensor([[1, 1, 1, 1, 1, 1]])  # a carbon bonded to five others
    edges = torch.zeros(1, 6, 6, dtype=torch.long)
    edges[0, 0, 1:] = edges[0, 1:, 0] = 1
    (smiles,) = G.decode(G.Graphs(nodes, edges))
    assert oracles.check(smiles).startswith("does not sanitise")
    again = G.encode([smiles], 6)
    assert sorted(again.edges[0].sum(1).tolist()) == [1, 1, 1, 1, 1, 5] and G.decode(again) == [smiles]


def test_bonds_of_empty_slots_are_dropped_when_decoding():
    nodes = torch.tensor([[1, 3, 0]])  # C, O and an empty slot
    edges = torch.tensor([[[0, 1, 2], [1, 0, 1], [2, 1, 0]]])
    assert G.decode(G.Graphs(nodes, edges)) == ["CO"]


@pytest.mark.parametrize("smiles, message", [
    ("C1CC", "not a SMILES"), ("C[Si](C)C", "the atom Si"), ("C[NH3+]", r"charge \+1"), ("C" * 30, "30 heavy atoms"),
])
def test_molecules_the_model_cannot_hold_are_one_line_errors(smiles, message):
    with pytest.raises(G.MoleculeError, match=message):
        G.encode([smiles], 27)


def test_every_step_reveals_its_share_and_the_last_reveals_everything():
    model = tiny(num_steps=4)
    traj = model.sample(5, generator=torch.Generator().manual_seed(0), keep_trajectory=True).trajectory
    masked = [int((s.nodes == len(G.NODE_TYPES)).sum() + (s.edges == len(G.BOND_TYPES)).sum() / 2) for s in traj.states]
    elements = model.num_elements  # 4 slots + 6 pairs
    assert masked == [5 * (elements - elements * j // 4) for j in range(5)]
    last = traj.states[-1]
    assert torch.equal(last.edges, last.edges.transpose(1, 2))


def test_the_reward_gradient_of_a_differentiable_sample_reaches_every_slot_and_pair():
    model = tiny(num_steps=10)
    out = model.sample_with_grad(3, generator=torch.Generator().manual_seed(0), last_k=10)
    params = model.trainable_parameters()
    rows, cols = torch.triu_indices(4, 4, offset=1)
    elements = [out.x.nodes[:, i, 1:].sum() for i in range(4)]
    elements += [out.x.edges[:, i, j, 1:].sum() for i, j in zip(rows.tolist(), cols.tolist())]
    for element in elements:
        grads = torch.autograd.grad(element, params, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_min_p_keeps_draws_near_the_top_type():
    model = tiny(num_steps=10, min_p=0.9)
    traj = model.sample(16, generator=torch.Generator().manual_seed(0), keep_trajectory=True).trajectory
    for j in range(10):
        step = model._step(model._one_hot(traj.states[j]), j)
        probs = step.logits[0].softmax(-1)  # the slots' types
        drawn = probs.gather(-1, traj.states[j + 1].nodes.clamp(max=len(G.NODE_TYPES) - 1)[..., None])[..., 0]
        new = step.masked[0] & (traj.states[j + 1].nodes != len(G.NODE_TYPES))
        assert (drawn[new] >= 0.9 * probs.amax(-1)[new] - 1e-6).all()


def over_valence(graphs: G.Graphs) -> int:
    """Slots whose bond orders exceed their type's valence (an empty slot holds none), over all graphs."""
    orders = graphs.edges.clamp(max=len(G.BOND_TYPES) - 1).float().sum(-1)
    return int((orders > G.MAX_VALENCE[graphs.nodes.clamp(max=len(G.NODE_TYPES) - 1)]).sum())


def test_the_valence_mask_keeps_every_atom_within_its_valence_when_one_element_is_revealed_a_step():
    # 5 slots and 10 pairs: 15 steps reveal one element each, so the mask sees every decision before it.
    # An untrained network bonds freely, so without the mask many slots exceed their valence.
    free, masked = (tiny(num_steps=15, max_atoms=5, valence_mask=mask) for mask in (False, True))
    samples = {m: m.sample(200, generator=torch.Generator().manual_seed(0), keep_trajectory=True) for m in (free, masked)}
    assert over_valence(samples[free].trajectory.states[-1]) > 50
    assert over_valence(samples[masked].trajectory.states[-1]) == 0
    # The mask is part of the policy: log-probs of its own samples and its KL to itself stay finite.
    trajectory = samples[masked].trajectory
    assert torch.isfinite(masked.log_prob(trajectory)).all()
    assert torch.allclose(masked.kl(trajectory, masked.frozen_copy()).sum(1), torch.zeros(200), atol=1e-5)


def test_featuriser_counts_atoms_bonds_environments_and_what_breaks_a_molecule():
    featuriser = MoleculeFeaturiser(8)
    acid, ring, pieces, crowded = featuriser(["CC(=O)O", "C1CC1", "CCO.C", "CC(C)(C)(C)C"])
    assert featuriser.dim == len(acid)
    assert acid[:7].tolist() == [2, 0, 2, 0, 0, 0, 0] and acid[7:10].tolist() == [2, 1, 0] and acid[10] == 4
    # acetic acid's centre carbon has three two-bond paths; the methyl carbon none
    two_bond_paths = acid[10 + 1 + 84:10 + 1 + 84 + 7 * 231]
    assert two_bond_paths.sum() == 3
    excess, lonely, extra, walks = slice(-15, -8), -8, -7, slice(-6, None)
    assert crowded[excess].tolist() == [1, 0, 0, 0, 0, 0, 0] and acid[excess].sum() == 0
    assert pieces[lonely] == 1 and acid[lonely] == 0
    assert pieces[extra] == 1 and featuriser(["CC.CC"])[0, extra] == 1 and acid[extra] == 0
    assert ring[walks][0] == 1 and acid[walks][0] == 0  # one triangle
    hazards = featuriser.hazard_columns  # what the feasibility model reads: excess valences, isolated atoms, pieces
    assert crowded[hazards].tolist() == crowded[-15:-6].tolist() and pieces[hazards][-2:].tolist() == [1, 1]


def test_two_pieces_grow_together_as_a_bond_between_them_becomes_likelier():
    x = G.one_hot(G.encode(["CC.CC"], 4))
    atoms = x.nodes.argmax(-1)[0].nonzero().flatten().tolist()
    apart = [(i, j) for i in atoms for j in atoms if i < j and x.edges[0, i, j, 0] == 1]
    i, j = apart[0]
    edges = x.edges.clone().requires_grad_()
    extra = hazards(G.SoftGraphs(x.nodes, edges))[0, -1]
    assert extra == 1
    (grad,) = torch.autograd.grad(extra, edges)
    assert grad[0, i, j, 1:].sum() + grad[0, j, i, 1:].sum() < 0  # a bond there means fewer pieces


def test_featuriser_of_relaxed_graphs_is_that_of_designs_on_one_hots_and_differentiable():
    featuriser = MoleculeFeaturiser(16)
    x = G.one_hot(G.encode(DRUGS, 16))
    torch.testing.assert_close(featuriser.relaxed(x), featuriser(DRUGS))
    soft = G.SoftGraphs(x.nodes.requires_grad_(), x.edges.requires_grad_())
    featuriser.relaxed(soft).sum().backward()
    assert soft.nodes.grad.abs().sum() > 0 and soft.edges.grad.abs().sum() > 0


def test_smiles_files_are_read_with_or_without_a_header_and_gzipped(tmp_path):
    (tmp_path / "a.smi").write_text("CCO ethanol\nc1ccccc1\n")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(b"id,SMILES\n1,CCN\n2,CCC\n"))
    assert read_smiles(tmp_path / "a.smi") == ["CCO", "c1ccccc1"]
    assert read_smiles(tmp_path / "b.csv.gz") == ["CCN", "CCC"]
    with pytest.raises(DataError, match="no SMILES file"):
        read_smiles(tmp_path / "missing.smi")


def test_generator_report_counts_validity_uniqueness_and_novelty_as_moses_does():
    samples = ["CCO", "OCC", "c1ccccc1O", "CC(C)(C)(C)C", "CCO.C", "CC(=O)Nc1ccc(O)cc1"]
    report = quality(samples, ["CCO", "CCN"])
    assert report["validity"] == 4 / 6 and report["uniqueness"] == 3 / 4 and report["novelty"] == 2 / 3
    # DiGress and GDSS keep a disconnected sample's largest fragment: valid there, not here.
    assert report["validity_largest_fragment"] == 5 / 6
    assert report["invalid_reasons"] == {"does not sanitise": 1, "2 fragments": 1}
    assert 0 < report["qed_mean"] < 1 and report["fcd"] > 0


def test_best_designs_are_reported_with_pmo_diversity_and_novelty_against_the_training_sample():
    metrics = top_designs_metrics(["CCO", "c1ccccc1"])
    same = metrics(["c1ccccc1", "c1ccccc1"])
    assert same == {"top10_diversity": 0.0, "top10_novelty": 0.0}
    mixed = metrics(["c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CCCCCCCCN"])
    assert 0.5 < mixed["top10_diversity"] <= 1 and mixed["top10_novelty"] == 2 / 3


def test_a_sampled_nitro_group_encodes_back_to_the_graph_the_model_wrote():
    # The model writes N(=O)=O with uncharged atoms; RDKit's sanitisation writes it charge-separated.
    written = G.Graphs(torch.tensor([[1, 2, 3, 3]]), torch.tensor([[[0, 1, 0, 0], [1, 0, 2, 2], [0, 2, 0, 0], [0, 2, 0, 0]]]))
    design = G.decode(written)[0]
    assert oracles.canonical_smiles(design) == "C[N+](=O)[O-]"  # one molecule, keyed as RDKit writes it
    for spelling in (design, "C[N+](=O)[O-]"):  # as decoded, and as RDKit (a genetic operator) writes it
        again = G.encode([spelling], 4)
        assert torch.equal(again.nodes, written.nodes) and torch.equal(again.edges, written.edges)


def test_a_graph_rdkit_charges_beyond_one_bond_encodes_back_to_itself():
    # N#N=O: RDKit sanitises it to [N-]=[NH+][O-], three charges no single bond separates.
    written = G.Graphs(torch.tensor([[2, 2, 3]]), torch.tensor([[[0, 3, 0], [3, 0, 2], [0, 2, 0]]]))
    design = G.decode(written)[0]
    assert oracles.canonical_smiles(design) == "[N-]=[NH+][O-]"
    again = G.encode([design], 3)
    assert torch.equal(again.nodes, written.nodes) and torch.equal(again.edges, written.edges)
    with pytest.raises(G.MoleculeError, match="charge"):  # charges that are not a separated bond stay outside
        G.encode(["CC[N+](C)(C)C"], 6)
