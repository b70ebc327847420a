"""Build skills.tsv, the taxonomy the matcher ships, from the upstream O*NET and ESCO files.

    python connectors/documents/data/build_skills.py /path/to/skills-source-folder

Takes the O*NET 29.2 Technology Skills flagged Hot Technology or In Demand, plus the names in
EXTRA_ONET, and the ESCO digital skills that name a tool or language (a capitalised label under a
programming, software or database concept), with their alternative labels. Each upstream name
becomes a clean canonical name with aliases: "Structured query language SQL" -> SQL (alias
"Structured query language"), "Google Angular" -> Angular, "Microsoft Excel" -> Excel. See
SOURCE.md beside this file for provenance and attribution.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
VENDORS = {
    "adobe", "amazon", "apache", "apple", "atlassian", "autodesk", "google", "ibm", "microsoft", "oracle",
    "red hat", "the mathworks", "sap", "cisco", "intuit", "dassault systemes", "trimble", "bentley",
    "eclipse", "esri",
}  # fmt: skip
# a vendor's product whose bare name is an everyday word keeps the vendor
KEEP_VENDOR = {
    "office", "word", "access", "project", "teams", "dynamics", "windows", "database", "cloud", "software",
    "docs", "meet", "ads", "sheets", "analytics", "workspace", "outlook", "data", "inventor", "audition",
}  # fmt: skip
GENERIC_TAIL = (" software", " ci")
# words a generic category is named by, never a product on their own
COMMON = {"accounting", "payroll", "productivity", "purchasing", "analytics", "email", "database", "spreadsheet"}
EXTRA_ONET = (
    "Java", "Kotlin", "Rust", "PyTorch", "Scikit-learn", "Keras", "NumPy", "Pandas", "Apache Airflow",
    "Snowflake", "Jupyter Notebook", "Terraform", "Flask", "Angular", "Objective C", "Hadoop",
    "Microsoft Azure", "Google Cloud software", "Apache Spark", "Redux", "Express.js", "Golang",
)  # fmt: skip
# canonical -> extra aliases and how strictly the name must appear
MANUAL: dict[str, tuple[tuple[str, ...], str]] = {
    ".NET": ((".NET Framework", "Microsoft .NET Framework", "dotnet"), "plain"),
    "Node.js": (("NodeJS", "Node JS"), "plain"),
    "Go": (("Golang",), "list"),
    "R": ((), "list"),
    "C": ((), "list"),
    "Kubernetes": (("K8s",), "plain"),
    "PostgreSQL": (("Postgres",), "plain"),
    "C#": (("C Sharp",), "plain"),
    "JavaScript": (("JS",), "case"),
    "Excel": (("MS Excel",), "case"),
    "Swift": ((), "case"),
    "Rust": ((), "case"),
    "Ruby": ((), "case"),
    "Spark": (("Apache Spark",), "case"),
    "Chef": ((), "case"),
    "Puppet": ((), "case"),
    "Slack": ((), "case"),
    "Zoom": ((), "case"),
    "Scala": ((), "case"),
    "Bootstrap": ((), "case"),
    "Selenium": ((), "case"),
    "Canva": ((), "case"),
    "React": (("React.js", "ReactJS"), "case"),
    "Bash": ((), "case"),
    "Perl": ((), "case"),
    "Facebook": ((), "case"),
    "Tableau": ((), "case"),
    "Redis": ((), "plain"),
    "Shell script": (("shell scripting",), "plain"),
    "Java": ((), "plain"),
    "SAS": ((), "case"),
    "Hibernate": (("Hibernate ORM",), "case"),
    "Jenkins": (("Jenkins CI",), "plain"),
}


def _acronym(words: list[str]) -> str | None:
    """'Structured query language SQL' -> 'SQL' when the last word abbreviates the words before it."""
    if len(words) < 3:
        return None
    last = words[-1]
    if not re.fullmatch(r"[A-Z][A-Z0-9]{1,5}", last):
        return None
    phrase = "".join(words[:-1]).lower()
    if phrase[0] != last[0].lower():
        return None
    it = iter(phrase)
    return last if all(ch.lower() in it for ch in last) else None


def clean(name: str) -> tuple[str, list[str]]:
    """(canonical name, aliases) of an upstream name."""
    aliases = [name]
    base = name
    for tail in GENERIC_TAIL:
        stripped = base[: -len(tail)]
        # 'Accounting software' stays whole: only a name ('Alteryx software') loses the tail
        named = re.search(r"[A-Z0-9+#.]", stripped[1:])
        one_word = " " not in stripped and stripped[:1].isupper() and stripped.lower() not in COMMON
        if base.lower().endswith(tail) and (named or one_word):
            base = stripped
    aliases.append(base)
    words = base.split()
    acro = _acronym(words)
    if acro:
        # 'Amazon Web Services AWS': the acronym abbreviates the whole name, vendor included
        aliases.append(" ".join(words[:-1]))
        return acro, [a for a in dict.fromkeys(aliases) if a != acro]
    low = base.lower()
    for v in sorted(VENDORS, key=len, reverse=True):
        if low.startswith(v + " ") and len(base) > len(v) + 1:
            rest = base[len(v) + 1 :]
            if rest.lower() not in KEEP_VENDOR:
                base = rest
            break
    words = base.split()
    acro = _acronym(words)
    if acro:
        aliases.append(" ".join(words[:-1]))
        base = acro
    else:
        # 'Microsoft SQL Server Integration Services SSIS' keeps its name without the acronym too
        if len(words) >= 3 and re.fullmatch(r"[A-Z][A-Z0-9]{1,5}", words[-1]):
            aliases.append(" ".join(words[:-1]))
    return base, [a for a in dict.fromkeys(aliases) if a != base]


def onet(path: Path) -> dict[str, tuple[str, list[str]]]:
    out: dict[str, tuple[str, list[str]]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    names = {r["Example"] for r in rows if r["Hot Technology"] == "Y" or r["In Demand"] == "Y"}
    present = {r["Example"].lower(): r["Example"] for r in rows}
    names |= {present[n.lower()] for n in EXTRA_ONET if n.lower() in present}
    for name in sorted(names):
        canon, aliases = clean(name)
        out.setdefault(canon.lower(), (canon, []))[1].extend(aliases)
    return out


ESCO_PARENTS = ("computer programming", "software", "database", "integrated development environment")


def esco(path: Path) -> list[tuple[str, list[str], str]]:
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            label = re.sub(r"\s*\(.*\)\s*$", "", r["preferredLabel"]).strip()
            parents = r["broaderConceptPT"].lower()
            if r["skillType"] != "knowledge" or not any(p in parents for p in ESCO_PARENTS):
                continue
            if not re.search(r"[A-Z+#.]", label) or len(label.split()) > 3 or len(label) < 2:
                continue
            # ESCO's alternative labels are phrases ("coding in Angular") or other tools: not aliases
            out.append((label, [], r["conceptUri"]))
    return out


def build(src: Path) -> list[tuple[str, list[str], str, str, str]]:
    skills: dict[str, dict] = {}
    for key, (canon, aliases) in onet(src / "onet_29.2_technology_skills.txt").items():
        skills[key] = {"name": canon, "aliases": aliases, "source": "onet", "uri": ""}
    for label, alts, uri in esco(src / "esco_digitalSkillsCollection_en.csv"):
        canon, aliases = clean(label)
        entry = skills.get(canon.lower())
        if entry is None:
            skills[canon.lower()] = {"name": canon, "aliases": [*aliases, *alts], "source": "esco", "uri": uri}
        else:
            entry["aliases"].extend([*aliases, *alts])
            entry["uri"] = entry["uri"] or uri
            entry["source"] = "onet+esco" if entry["source"] == "onet" else entry["source"]
    for canon, (aliases, _mode) in MANUAL.items():
        entry = skills.setdefault(canon.lower(), {"name": canon, "aliases": [], "source": "onet", "uri": ""})
        entry["name"] = canon
        entry["aliases"].extend(aliases)
    rows = []
    for entry in sorted(skills.values(), key=lambda e: e["name"].lower()):
        canon = entry["name"]
        mode = MANUAL.get(canon, ((), "plain"))[1]
        aliases = [a for a in dict.fromkeys(entry["aliases"]) if a.lower() != canon.lower() and "|" not in a]
        rows.append((canon, aliases, entry["source"], entry["uri"], mode))
    return rows


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/shared/data/skills")
    rows = build(src)
    with open(HERE / "skills.tsv", "w", encoding="utf-8", newline="\n") as f:
        f.write("name\taliases\tsource\turi\tmatch\n")
        for canon, aliases, source, uri, mode in rows:
            f.write(f"{canon}\t{'|'.join(aliases)}\t{source}\t{uri}\t{mode}\n")
    print(f"{len(rows)} skills written to {HERE / 'skills.tsv'}")


if __name__ == "__main__":
    main()
