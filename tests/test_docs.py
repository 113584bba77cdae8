from emu.contract import docgen


def test_generated_doc_tables_are_current():
    with open(docgen.DOC) as f:
        text = f.read()
    assert docgen.render(text) == text, "run `python -m emu.contract.docgen` to regenerate docs/isa.md"
