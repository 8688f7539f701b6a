//! The HTML audit report (`tieline report`, `tieline_net::report`) of a real chain: three
//! rounds of the three-area RTS-GMLC consortium negotiated through the in-memory cluster with
//! each area's private grid model (derated tie lines and a stressed grid, so there are
//! objections, cuts and revisions), an appeal, and a crashed primary skipped. The report is
//! well-formed, self-contained HTML with every block traceable; a tampered chain's report says
//! where the audit failed.

use std::sync::OnceLock;

use scraper::{Html, Selector};
use tieline_core::block::{Appeal, AppealClaim, Block};
use tieline_core::consensus::sim::Cluster;
use tieline_core::consensus::{Input, Reply};
use tieline_core::crypto::Signed;
use tieline_core::encoding::Tagged;
use tieline_core::grid::{GridConsortium, GridConsortiumOptions};
use tieline_core::units::Quantity;
use tieline_net::report;

use tieline_net::cluster::RTS_GMLC_CASE as RTS_GMLC;

/// A chain name with markup in it: the report must show it as text.
const CHAIN_NAME: &str = "RTS-GMLC <script>alert('x')</script> & \"co\"";

/// Most simulated events one height may take.
const MAX_EVENTS: usize = 200_000;

struct Chain {
    consortium: GridConsortium,
    blocks: Vec<Block>,
}

/// Three committed heights, built once for every test of this file.
fn chain() -> &'static Chain {
    static CHAIN: OnceLock<Chain> = OnceLock::new();
    CHAIN.get_or_init(build_chain)
}

fn build_chain() -> Chain {
    let c = GridConsortium::from_case(
        RTS_GMLC,
        &GridConsortiumOptions {
            chain_name: CHAIN_NAME.into(),
            line_rating_percent: 70,
            ..GridConsortiumOptions::rts_gmlc(20)
        },
    )
    .expect("the shipped case makes a consortium");
    let mut cluster = Cluster::with_keys(
        &c.genesis,
        &c.members,
        c.security_checks().expect("the area models load"),
    );
    cluster.start();
    let decided = |h: usize| {
        move |cl: &Cluster| {
            cl.nodes
                .iter()
                .filter(|n| n.up)
                .all(|n| n.store.blocks.len() >= h)
        }
    };
    // Height 1: every participant bids.
    submit(&c, &mut cluster, 1);
    assert!(cluster.run_until(MAX_EVENTS, decided(1)), "height 1");
    // Height 2: every participant bids, and the first disputes its bid's allocation.
    submit(&c, &mut cluster, 2);
    let p = &c.genesis.participants[0];
    let bid = c.bids(2)[0].body.id();
    let appeal = Signed::sign(
        Appeal {
            chain_id: c.genesis.chain_id(),
            participant: p.id,
            height: 2,
            claim: AppealClaim::Misallocated { bid },
        },
        &c.participants[0],
    );
    let home = cluster
        .nodes
        .iter()
        .position(|n| n.ctx.me == p.home)
        .unwrap();
    let effects = cluster.input(home, Input::Appeal(appeal));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            tieline_core::consensus::Effect::Reply {
                reply: Reply::AppealForwarded { height: 2 },
                ..
            }
        )),
        "the appeal is forwarded"
    );
    assert!(cluster.run_until(MAX_EVENTS, decided(2)), "height 2");
    // Height 3: its primary has crashed; the next commits the round (fault skip).
    let p0 = c.genesis.primary(3, 0);
    let i0 = cluster.nodes.iter().position(|n| n.ctx.me == p0).unwrap();
    cluster.crash(i0);
    submit(&c, &mut cluster, 3);
    assert!(cluster.run_until(MAX_EVENTS, decided(3)), "height 3");
    assert_eq!(cluster.disagreement(), None);
    let blocks = cluster.longest_chain().to_vec();
    assert_eq!(blocks.len(), 3);
    Chain {
        consortium: c,
        blocks,
    }
}

/// Every participant whose home node is up bids for `height`.
fn submit(c: &GridConsortium, cluster: &mut Cluster, height: u64) {
    for bid in c.bids(height) {
        let home = c.genesis.participant(bid.body.participant).unwrap().home;
        if !cluster.nodes.iter().any(|n| n.ctx.me == home && n.up) {
            continue;
        }
        let reply = cluster.submit(bid);
        assert!(matches!(reply, Some(Reply::Receipt(_))), "{reply:?}");
    }
}

fn encoded(blocks: &[Block]) -> Vec<Vec<u8>> {
    blocks.iter().map(Tagged::to_canonical_bytes).collect()
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// Parses the report, failing on any HTML parse error, and checks it is self-contained.
fn parse(html: &str) -> Html {
    let doc = Html::parse_document(html);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "a script element");
    let without_ns = lower.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in [
        "http://", "https://", "<link", "<img", "<iframe", "src=", "url(", "@import",
    ] {
        assert!(
            !without_ns.contains(external),
            "the report refers to something outside itself: {external}"
        );
    }
    doc
}

fn text_of(doc: &Html, selector: &str) -> String {
    doc.select(&sel(selector))
        .next()
        .unwrap_or_else(|| panic!("no {selector}"))
        .text()
        .collect()
}

#[test]
fn report_of_a_negotiated_chain_is_self_contained_and_traceable() {
    let Chain { consortium, blocks } = chain();
    let g = &consortium.genesis;
    // The chain has what the report must tell.
    assert!(blocks.iter().any(|b| b.header.revision > 0), "revisions");
    assert!(
        blocks.iter().any(|b| !b.body.process.objections.is_empty()),
        "objections"
    );
    assert!(
        blocks
            .iter()
            .any(|b| !b.body.process.clearing.cuts.is_empty()),
        "cuts"
    );
    assert_eq!(blocks[1].body.process.appeals.len(), 1, "the appeal");
    assert_eq!(blocks[2].header.view, 1, "the fault skip");

    let html = report::render(g, &encoded(blocks));
    // Kept for a look (and for `tieline report --chain`): the report, the chain and its genesis.
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(tmp.join("report-rts-gmlc.html"), &html).unwrap();
    std::fs::write(tmp.join("report-rts-gmlc.genesis.toml"), g.to_toml()).unwrap();
    tieline_net::chainfile::write_chain(&tmp.join("report-rts-gmlc.chain"), blocks).unwrap();
    let doc = parse(&html);

    // The name is shown as text, never as markup.
    assert_eq!(
        text_of(&doc, "h1"),
        format!("Tieline audit report: {CHAIN_NAME}")
    );
    assert!(text_of(&doc, "title").contains(CHAIN_NAME));
    // The verdict, near the top.
    let verdict = text_of(&doc, "#verdict");
    assert!(verdict.contains("Audit passed"), "{verdict}");
    assert!(verdict.contains("All 3 blocks verified"), "{verdict}");
    let checks = text_of(&doc, "ul.checks");
    for id in [
        "D15", "D16", "D17", "D18", "D19", "D20", "D21", "D22", "V1", "V2", "V3", "V4", "V5", "V6",
        "V7", "V8", "V9",
    ] {
        assert!(checks.contains(id), "check {id} is listed");
    }
    let members: String = doc
        .select(&sel("#genesis ~ table"))
        .flat_map(|t| t.text())
        .collect();
    for m in &g.members {
        assert!(members.contains(m.name.as_str()), "member {}", m.name);
    }

    // One flow diagram per round, one price chart with a line per area.
    assert_eq!(doc.select(&sel("svg.flow-diagram")).count(), 3);
    assert_eq!(doc.select(&sel("svg.price-chart")).count(), 1);
    assert_eq!(doc.select(&sel("svg")).count(), 4);
    assert_eq!(
        doc.select(&sel("svg.price-chart polyline")).count(),
        g.areas.len()
    );

    for (i, b) in blocks.iter().enumerate() {
        let h = i + 1;
        let id = format!("#height-{h}");
        let section = doc
            .select(&sel(&format!("section{id}")))
            .next()
            .unwrap_or_else(|| panic!("no anchor {id}"));
        let text: String = section.text().collect();
        // Traceable: its hash, its predecessor's, its commit certificate's signers.
        assert!(text.contains(&b.digest().to_hex()), "round {h}: block hash");
        assert!(
            text.contains(&b.header.previous.to_hex()),
            "round {h}: previous"
        );
        assert!(text.contains("verified"), "round {h}");
        for s in b.certificate.signers() {
            let name = &g.member(s).unwrap().name;
            assert!(text.contains(name.as_str()), "round {h}: signer {name}");
        }
        // The contents link to it.
        assert_eq!(
            doc.select(&sel(&format!("nav a[href=\"{id}\"]"))).count(),
            1,
            "contents link to {id}"
        );
        // Its diagram: every area and tie line, prices and flows.
        let svg = section.select(&sel("svg.flow-diagram")).next().unwrap();
        assert_eq!(svg.select(&sel("circle")).count(), g.areas.len());
        assert_eq!(svg.select(&sel("line.tie-line")).count(), g.tie_lines.len());
        let svg_text: String = svg.text().collect();
        for p in &b.body.process.clearing.outcome.area_prices {
            assert!(
                svg_text.contains(&format!("{} /MWh", p.price)),
                "round {h}: price {} in the diagram",
                p.price
            );
        }
        for f in &b.body.process.clearing.outcome.flows {
            assert!(
                svg_text.contains(&format!("L{}: {} / ", f.tie_line, Quantity(f.flow.0.abs()))),
                "round {h}: flow of line {}",
                f.tie_line
            );
        }
        // The negotiation and the counts.
        let story: String = section
            .select(&sel("ol.story"))
            .next()
            .unwrap()
            .text()
            .collect();
        assert!(story.contains("Revision 0 proposed by"), "{story}");
        for o in &b.body.process.objections {
            let name = &g.member(o.body.objector).unwrap().name;
            assert!(story.contains(name.as_str()), "round {h}: objector {name}");
        }
        let bids = b.body.process.bid_count();
        assert!(
            text.contains(&format!("{bids} in ")),
            "round {h}: bid count"
        );
        assert!(
            text.contains(&format!("{} trades", b.body.trades.len())),
            "round {h}: trade count"
        );
    }
    let round2 = text_of(&doc, "#height-2");
    assert!(round2.contains("misallocated"), "the appeal's claim");
    assert!(round2.contains("outcome stands"), "the appeal's resolution");
    let round3 = text_of(&doc, "#height-3");
    assert!(round3.contains("fault skip"), "{round3}");
    assert!(round3.contains("skip certificate for view 0 present"));
    let skipped = &g.member(blocks[2].body.process.skipped[0]).unwrap().name;
    assert!(round3.contains(skipped.as_str()));
}

#[test]
fn report_of_a_tampered_chain_says_where_the_audit_failed() {
    let Chain { consortium, blocks } = chain();
    let g = &consortium.genesis;

    // A trade quantity changed in block 2, re-encoded: the trades no longer hash to the root.
    let mut tampered = blocks.clone();
    tampered[1].body.trades[0].quantity.0 += 1;
    let html = report::render(g, &encoded(&tampered));
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(tmp.join("report-rts-gmlc-tampered.html"), &html).unwrap();
    let doc = parse(&html);
    let verdict = text_of(&doc, "#verdict");
    assert!(verdict.contains("AUDIT FAILED at height 2"), "{verdict}");
    assert!(verdict.contains("Merkle root"), "{verdict}");
    assert!(
        verdict.contains(&tampered[1].digest().to_hex()),
        "{verdict}"
    );
    assert!(
        verdict.contains("Blocks verified before it: 1 "),
        "{verdict}"
    );
    // The verdict comes before any round.
    assert!(html.find("AUDIT FAILED at height 2") < html.find("id=\"height-1\""));
    assert!(text_of(&doc, "#height-1").contains("verified"));
    let failed = doc.select(&sel("section.failed")).collect::<Vec<_>>();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].value().attr("id"), Some("height-2"));
    // Later rounds are decoded but marked unverified.
    let unverified = doc.select(&sel("section.unverified")).collect::<Vec<_>>();
    assert_eq!(unverified.len(), 1);
    assert_eq!(unverified[0].value().attr("id"), Some("height-3"));
    let round3: String = unverified[0].text().collect();
    assert!(round3.contains("Not verified"), "{round3}");
    assert!(round3.contains(&blocks[2].digest().to_hex()));
    assert_eq!(doc.select(&sel("svg.flow-diagram")).count(), 3);

    // One byte flipped inside block 3's encoding: caught at height 3, whatever it hits.
    let mut raw = encoded(blocks);
    let mid = raw[2].len() / 2;
    raw[2][mid] ^= 0x01;
    let audited = report::audit(g, &raw);
    assert!(!audited.passed());
    let html = report::render_audited(g, &audited);
    let doc = parse(&html);
    let verdict = text_of(&doc, "#verdict");
    assert!(verdict.contains("AUDIT FAILED at height 3"), "{verdict}");
    assert!(matches!(
        audited.rounds[2].status,
        report::RoundStatus::Failed(_)
    ));
    assert_eq!(doc.select(&sel("section.failed")).count(), 1);

    // A block that does not decode at all.
    let mut raw = encoded(blocks);
    raw[1].truncate(10);
    let html = report::render(g, &raw);
    let doc = parse(&html);
    let verdict = text_of(&doc, "#verdict");
    assert!(verdict.contains("AUDIT FAILED at height 2"), "{verdict}");
    assert!(verdict.contains("does not decode"), "{verdict}");
    assert!(text_of(&doc, "#height-2").contains("do not decode"));
    assert!(text_of(&doc, "#height-3").contains(&blocks[2].digest().to_hex()));
}
