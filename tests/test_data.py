"""Loading data: formats, column detection, and a clear error for every kind of bad file."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import make_rows, write_csv

from frugalml.data import load_dataset, load_pool, stratified_split, validation_split
from frugalml.errors import DataError


def test_csv_jsonl_parquet_and_hf_folder_load_the_same_rows(tmp_path):
    rows = make_rows(5, seed=0)
    frame = pd.DataFrame(rows, columns=["utterance", "intent"])
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "d.parquet")
    import datasets

    hf = datasets.Dataset.from_pandas(frame)
    hf = hf.class_encode_column("intent")  # integer codes with names: loaded back as names
    hf.save_to_disk(str(tmp_path / "hf"))

    loaded = [load_dataset(tmp_path / n) for n in ("d.csv", "d.jsonl", "d.parquet", "hf")]
    for data in loaded:
        assert data.texts == [r[0] for r in rows]
        assert data.labels == [r[1] for r in rows]
    assert len({d.sha256 for d in loaded}) == 4  # content hashes differ per file


def test_hf_folders_with_several_splits_are_refused_and_label_minus_one_is_no_label(tmp_path):
    import datasets

    frame = pd.DataFrame(make_rows(4, seed=0), columns=["text", "label"])
    labelled = datasets.Dataset.from_pandas(frame).class_encode_column("label")
    splits = datasets.DatasetDict({"train": labelled, "test": labelled.select(range(3))})
    splits.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(
        DataError, match="holds the splits \\['test', 'train'\\]; point at one split's folder"
    ):
        load_dataset(tmp_path / "dd")  # it was the train split, even for eval
    assert len(load_dataset(tmp_path / "dd" / "test")) == 3
    datasets.DatasetDict({"train": labelled}).save_to_disk(str(tmp_path / "one"))
    assert len(load_dataset(tmp_path / "one")) == 12

    # Hugging Face marks a row without a label -1: no label, not a crash in int2str.
    codes = labelled.cast_column("label", labelled.features["label"])
    codes = codes.map(lambda row, i: {"label": -1 if i == 1 else row["label"]}, with_indices=True)
    codes.save_to_disk(str(tmp_path / "pool"))
    unlabelled, known = load_pool(tmp_path / "pool")
    assert unlabelled.texts == [frame["text"][1]] and len(known) == 11
    with pytest.raises(DataError, match="missing label"):
        load_dataset(tmp_path / "pool")


def test_explicit_columns_and_ids(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"uid": ["a", "b"], "body": ["x y", "z"], "y": [1, 2]}).to_csv(path, index=False)
    data = load_dataset(path, text_column="body", label_column="y")
    assert data.ids == ["a", "b"] and data.labels == ["1", "2"] and data.texts == ["x y", "z"]


def test_unlabelled_pool_loads_without_labels(tmp_path):
    path = write_csv(tmp_path / "pool.csv", [("p1", "some text")], header=("id", "text"))
    data = load_dataset(path, require_labels=False)
    assert data.labels is None and data.ids == ["p1"]


def test_a_partly_labelled_pool_splits_into_rows_to_label_and_labelled_rows(tmp_path):
    path = tmp_path / "pool.jsonl"
    rows = [
        {"text": "new one", "label": None, "source": None},
        {"text": "a human labelled this", "label": "refund", "source": "human"},
        {"text": "an earlier run guessed this", "label": "refund", "source": "auto"},
        {"text": "labelled, no source", "label": "card", "source": None},
        {"text": "an empty string is no label", "label": " ", "source": None},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool, known = load_pool(path)
    # Ids are the file's row numbers in both parts; an auto guess is made again, so it is pool.
    assert (pool.ids, pool.labels) == (["0", "2", "4"], None)
    assert "label" not in pool.extra and pool.numbered
    assert (known.ids, known.labels) == (["1", "3"], ["refund", "card"])

    write_csv(tmp_path / "plain.csv", [("just text",)], header=("text",))
    assert load_pool(tmp_path / "plain.csv")[1] is None
    write_csv(tmp_path / "done.csv", [("a", "x"), ("b", "y")])
    with pytest.raises(DataError, match="every row already has a label in column 'label'; nothing to label"):
        load_pool(tmp_path / "done.csv")
    write_csv(tmp_path / "dup.csv", [("u1", "a", "x"), ("u1", "b", "")], header=("id", "text", "label"))
    with pytest.raises(DataError, match=r"dup.csv: duplicate id\(s\) \['u1'\]"):  # across the two parts
        load_pool(tmp_path / "dup.csv")
    write_csv(tmp_path / "gap.csv", [("a", "x"), ("b", ""), ("  ", "")])
    with pytest.raises(
        DataError, match=r"empty text in row\(s\) 2 \(data rows from 0\)$"
    ):  # the file's row, not the part's
        load_pool(tmp_path / "gap.csv")


def test_a_pool_label_column_is_the_named_one_when_a_name_is_given(tmp_path):
    # --label-column names the labelled file's column: a pool without it has no labels, and
    # its `category` (say, a ticket's channel) is not taken for one.
    rows = [("a", "web", "refund"), ("b", "", ""), ("c", "phone", "")]
    path = write_csv(tmp_path / "pool.csv", rows, header=("text", "category", "gold"))
    pool, known = load_pool(path, label_column="intent")
    assert known is None and len(pool) == 3 and pool.extra["category"][::2] == ["web", "phone"]
    pool, known = load_pool(path, label_column="gold")
    assert known.labels == ["refund"] and pool.ids == ["1", "2"]
    assert load_pool(path)[1].labels == ["web", "phone"]  # by name, without one
    texts = write_csv(tmp_path / "texts.csv", [("reset my pin",)], header=("category",))
    assert load_pool(texts, text_column="category")[1] is None  # the text column is no label column


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (None, ".csv", "no such file"),
        (b"text,label\n", ".csv", "contains no rows"),
        (b"", ".csv", "contains no rows"),
        (b"a,b\n1,2\n", ".csv", "no text column found"),
        (b"text\nhello\n", ".csv", "no label column found"),
        (b"text,label\nok,\n", ".csv", "missing label in row(s) 0"),
        (b"text,label\nok,x\n  ,x\n", ".csv", "empty text in row(s) 1 (data rows from 0)"),  # file line 3
        (b"text,label\ncaf\xe9,x\n", ".csv", "not valid UTF-8"),
        (b'{"text": "a", "label": "x"}\n{broken\n', ".jsonl", "cannot be read as jsonl"),
        (b"not parquet at all", ".parquet", "cannot be read as parquet"),
        (b"whatever", ".xlsx", "unknown format '.xlsx'"),
        (
            b"id,text,label\n,hello,x\nq2,hi,y\n",
            ".csv",
            "empty id in row(s) 0 (data rows from 0) of column 'id'",
        ),
        (b"id,text,label\n1,a,x\n1,b,y\n", ".csv", "duplicate id"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, content, suffix, message):
    path = tmp_path / f"data{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_wrong_named_column_lists_the_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", [("a", "x")])
    with pytest.raises(DataError, match=r"no text column 'body'; columns are \['text', 'label'\]"):
        load_dataset(path, text_column="body")


def test_single_class_and_unseen_eval_labels_are_refused(tmp_path):
    one = load_dataset(write_csv(tmp_path / "one.csv", [("a", "x"), ("b", "x")]))
    with pytest.raises(DataError, match="at least 2 classes"):
        one.check_trainable()
    test = load_dataset(write_csv(tmp_path / "t.csv", [("a", "x"), ("b", "zzz")]))
    with pytest.raises(DataError, match="not seen in training: 'zzz'"):
        test.check_labels_known(["x", "y"])


def test_stratified_split_is_deterministic_and_keeps_proportions(tmp_path):
    rows = [(f"t{i}", "a" if i % 4 else "b") for i in range(200)] + [("single", "c")]
    data = load_dataset(write_csv(tmp_path / "d.csv", rows))
    keep1, held1 = stratified_split(data, 0.25, seed=3)
    keep2, held2 = stratified_split(data, 0.25, seed=3)
    keep3, _ = stratified_split(data, 0.25, seed=4)
    assert keep1.ids == keep2.ids and held1.ids == held2.ids
    assert keep1.ids != keep3.ids
    assert sorted(keep1.ids + held1.ids, key=int) == data.ids  # a partition of the rows
    assert held1.class_counts() == {"a": 38, "b": 12}  # 3:1 as in the data
    assert "single" in keep1.texts  # a class with one example stays on the training side

    # Mostly single-row classes: only rows of classes with two or more can be held out.
    rare = load_dataset(
        write_csv(tmp_path / "r.csv", [(f"t{i}", f"c{i}") for i in range(18)] + [("x", "z")] * 2)
    )
    keep, held = stratified_split(rare, 0.1, seed=0)
    assert held.labels == ["z"] and len(keep) == 19
    with pytest.raises(DataError, match="every class has a single row"):
        stratified_split(load_dataset(write_csv(tmp_path / "s.csv", [("a", "x"), ("b", "y")])), 0.1)


def test_validation_split_holds_out_human_rows_only(tmp_path):
    # As `frugalml label auto` writes it: 40 human rows, 160 accepted auto-labels.
    frame = pd.DataFrame(
        {
            "id": range(200),
            "text": [f"t{i}" for i in range(200)],
            "label": ["a" if i % 2 else "b" for i in range(200)],
            "source": ["human"] * 40 + ["auto"] * 160,
        }
    )
    frame.to_csv(tmp_path / "labelled.csv", index=False)
    data = load_dataset(tmp_path / "labelled.csv")
    fit, val = validation_split(data, 0.25, seed=0)
    assert set(val.extra["source"]) == {"human"} and len(val) == 10  # a quarter of the human rows
    assert val.class_counts() == {"a": 5, "b": 5}
    assert fit.extra["source"].count("auto") == 160
    assert sorted(fit.ids + val.ids, key=int) == data.ids
    # Without a source column (or with humans only) it is the plain stratified split.
    plain = load_dataset(write_csv(tmp_path / "plain.csv", [(f"t{i}", "ab"[i % 2]) for i in range(200)]))
    assert [d.ids for d in validation_split(plain, 0.25)] == [d.ids for d in stratified_split(plain, 0.25)]


def test_a_json_file_may_hold_one_array_of_records(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"text": "t1", "label": "a"}, {"text": "t2", "label": "b"}]))
    assert load_dataset(path).labels == ["a", "b"]
    path.write_text('{"text": "t1", "label": "a"}\n{"text": "t2", "label": "b"}\n')  # lines, as before
    assert load_dataset(path).texts == ["t1", "t2"]


def test_tsv_quote_marks_are_text(tmp_path):
    path = tmp_path / "q.tsv"
    rows = ['"Where is my parcel?" I asked twice\ta', '"I want my money back\tb', 'my 5" case never came\ta']
    path.write_text("text\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    data = load_dataset(path)
    assert data.texts == [r.split("\t")[0] for r in rows] and data.labels == ["a", "b", "a"]


def test_a_byte_order_mark_is_no_part_of_the_first_column(tmp_path):
    for suffix, content in (
        (".csv", "text,label\nhi,a\nho,b\n"),
        (".jsonl", '{"text": "hi", "label": "a"}\n'),
    ):
        path = tmp_path / f"bom{suffix}"
        path.write_text("\ufeff" + content, encoding="utf-8")  # as Excel and Notepad write UTF-8
        assert load_dataset(path).texts[0] == "hi"


def test_jsonl_with_numeric_labels_reads_them_as_strings(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 2}) for i in range(4)))
    assert load_dataset(path).labels == ["0", "1", "0", "1"]


def test_csv_cells_are_read_as_written(tmp_path):
    # pandas alone reads ids 007 as 7 (a Label Studio round trip would change them) and the label
    # "NA" or the text "null" as missing values.
    path = tmp_path / "d.csv"
    path.write_text(
        "id,text,label,zip,flag\n007,card arrived,NA,007,true\n008,null,None,,false\n", encoding="utf-8"
    )
    data = load_dataset(path)
    assert (data.ids, data.texts, data.labels) == (["007", "008"], ["card arrived", "null"], ["NA", "None"])
    # Other columns too (a CSV has no types): written back, to CSV or to Label Studio, unchanged.
    assert data.extra["zip"][0] == "007" and pd.isna(data.extra["zip"][1])
    assert data.extra["flag"] == ["true", "false"]
    path.write_text("text,label\na,x\nb,\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing label in row"):  # only an empty cell is missing
        load_dataset(path)


def test_a_column_named_like_a_chosen_one_is_kept_beside_it_on_output(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,subject,text,label\n1,card lost,body one,a\n2,refund,body two,b\n", encoding="utf-8")
    data = load_dataset(path, text_column="subject")
    frame = data.to_frame()
    assert list(frame.columns) == ["id", "text", "label", "original_text"]
    assert frame["text"].tolist() == ["card lost", "refund"]  # the chosen column, not overwritten
    assert frame["original_text"].tolist() == ["body one", "body two"]
