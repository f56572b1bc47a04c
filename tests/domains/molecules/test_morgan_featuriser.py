import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from domains.molecules import graphs as G
from domains.molecules.morgan_featuriser import BITS, MorganFeaturiser
from domains.molecules.tasks import reference_smiles

OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc1nccc(-c2cn(C)c3ccccc23)n1"


def test_designs_get_the_bits_rdkits_morgan_generator_sets():
    designs = reference_smiles()[:60] + [OSIMERTINIB]
    featuriser = MorganFeaturiser(max(G.heavy_atoms(s) for s in designs))
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=BITS)
    expected = np.stack([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in designs])
    assert np.array_equal(featuriser(designs)[:, :BITS].numpy(), expected)
    assert featuriser(designs).shape == (len(designs), featuriser.dim)


def test_a_set_bit_carries_gradient_to_the_atoms_and_bonds_of_its_environments_and_an_unset_one_none():
    featuriser = MorganFeaturiser(8)
    hard = G.one_hot(G.encode(["CCO"], 8))
    # Probabilities below one for the sampled types: what a relaxed sample's chain rule sees.
    x = G.SoftGraphs((hard.nodes * 0.9 + 0.1 / hard.nodes.shape[-1]).requires_grad_(),
                     (hard.edges * 0.9 + 0.1 / hard.edges.shape[-1]).requires_grad_())
    features = featuriser.relaxed(x)[0, :BITS]
    on = featuriser(["CCO"])[0, :BITS] > 0
    assert 0 < features[on].min() < 1 and torch.all(features[~on] == 0)
    set_grad = torch.autograd.grad(features[on].sum(), (x.nodes, x.edges), retain_graph=True)
    assert all(g.abs().sum() > 0 for g in set_grad)
    unset_grad = torch.autograd.grad(features[~on].sum(), (x.nodes, x.edges), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in unset_grad)

def test_a_graph_rdkit_cannot_sanitise_is_featurised_as_drawn():
    featuriser = MorganFeaturiser(7)
    pentavalent = G.decode(G.Graphs(torch.tensor([[1, 1, 1, 1, 1, 1, 0]]),
                                    torch.tensor([[[0, 1, 1, 1, 1, 1, 0]] + [[1, 0, 0, 0, 0, 0, 0]] * 5 + [[0] * 7]])))
    features = featuriser(pentavalent)
    assert features[0, :BITS].sum() > 0 and features[0, featuriser.hazard_columns].sum() > 0
