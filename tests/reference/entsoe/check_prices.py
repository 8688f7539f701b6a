#!/usr/bin/env python3
"""Reads a Tieline A44 price document with entsoe-py's own parser and prints what it found.

Usage: check_prices.py FILE.xml

entsoe.parsers.parse_prices merges every TimeSeries of a document into one series per
resolution, so the document is first split per area (in_Domain.mRID) with the standard
library; each area's document is then parsed by entsoe-py alone. Output (JSON on stdout):

    {"<area code>": [{"start_ms": ..., "minutes": 60, "price": 41.5}, ...], ...}
"""
import json
import sys
import xml.etree.ElementTree as ET

from entsoe.parsers import parse_prices

MINUTES = {"15min": 15, "30min": 30, "60min": 60}


def main(path):
    text = open(path, encoding="utf-8").read()
    root = ET.fromstring(text)
    ns = root.tag[1:].split("}")[0]

    def q(tag):
        return "{%s}%s" % (ns, tag)

    ET.register_namespace("", ns)
    areas = sorted({ts.find(q("in_Domain.mRID")).text for ts in root.findall(q("TimeSeries"))})
    out = {}
    for area in areas:
        doc = ET.fromstring(text)
        for ts in doc.findall(q("TimeSeries")):
            if ts.find(q("in_Domain.mRID")).text != area:
                doc.remove(ts)
        parsed = parse_prices(ET.tostring(doc, encoding="unicode"))
        points = []
        for freq, series in parsed.items():
            if series is None or len(series) == 0:
                continue
            for stamp, price in series.items():
                points.append(
                    {"start_ms": int(stamp.value // 1_000_000), "minutes": MINUTES[freq], "price": float(price)}
                )
        out[area] = sorted(points, key=lambda p: (p["start_ms"], p["minutes"]))
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
