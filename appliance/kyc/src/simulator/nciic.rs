//! NCIIC `nciicCheck`, the authority's side: the SOAP envelope, the licence, the conditions document, the QPS limit,
//! and the answers — 一致 with the photo, 不一致, 库中无此号 — or a `RESPONSE` with an `ErrorCode`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Reply, Simulator};
use crate::vendor::nciic::{NAMESPACE, envelope, escape, fields};

fn out(inner: &str) -> Reply {
    Reply::xml(
        200,
        envelope(&format!(
            "<ns1:nciicCheckResponse xmlns:ns1=\"{NAMESPACE}\"><ns1:out>{}</ns1:out></ns1:nciicCheckResponse>",
            escape(&format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{inner}"))
        )),
    )
}

fn row(output: &str) -> Reply {
    out(&format!("<ROWS><ROW no=\"1\"><INPUT></INPUT><OUTPUT>{output}</OUTPUT></ROW></ROWS>"))
}

/// The request refused as a whole (licence, IP, format, busy).
pub(super) fn refused(code: &str, message: &str) -> Reply {
    out(&format!(
        "<RESPONSE errorcode=\"{0}\" code=\"0\" countrows=\"1\"><ROWS><ROW><ErrorCode>{0}</ErrorCode><ErrorMsg>{1}\
         </ErrorMsg></ROW></ROWS></RESPONSE>",
        escape(code),
        escape(message)
    ))
}

/// A row answered with a message (e.g. 库中无此号).
pub(super) fn message(text: &str) -> Reply {
    row(&format!("<ITEM><errormesage>{}</errormesage><errormesagecol></errormesagecol></ITEM>", escape(text)))
}

fn fault(text: &str) -> Reply {
    Reply::xml(
        500,
        envelope(&format!(
            "<soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>{}</faultstring></soapenv:Fault>",
            escape(text)
        )),
    )
}

pub(super) fn answer(sim: &mut Simulator, body: &[u8], now_s: u64) -> Reply {
    let Some(license) = sim.nciic_license.clone() else { return fault("NCIIC is not simulated here") };
    let Some(Ok(outer)) = std::str::from_utf8(body).ok().map(fields) else {
        return fault("the request is not a SOAP envelope");
    };
    let get = |f: &[(String, String)], n: &str| f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (Some(given), Some(conditions)) = (get(&outer, "inLicense"), get(&outer, "inConditions")) else {
        return fault("nciicCheck takes inLicense and inConditions");
    };
    if given.trim() != license {
        return refused("-70", "授权文件错误");
    }
    if !sim.within_limit("nciicCheck", now_s) {
        return refused("-90", "系统繁忙，请稍后再试");
    }
    let Ok(rows) = fields(&conditions) else { return refused("-20", "查询条件格式错误") };
    let numbers: Vec<&str> = rows.iter().filter(|(k, _)| k == "GMSFHM").map(|(_, v)| v.as_str()).collect();
    let names: Vec<&str> = rows.iter().filter(|(k, _)| k == "XM").map(|(_, v)| v.as_str()).collect();
    // The first row names the columns; the second is the person.
    let (Some(number), Some(name), true) = (numbers.get(1), names.get(1), get(&rows, "SBM").is_some()) else {
        return refused("-20", "查询条件格式错误");
    };
    if crate::id::parse(number, crate::id::Date::from_unix(now_s)).is_err() {
        return row(
            "<ITEM><errormesage>公民身份号码格式错误</errormesage><errormesagecol>gmsfhm</errormesagecol></ITEM>",
        );
    }
    match sim.people.get(*number) {
        None => message("服务结果:库中无此号，请到户籍所在地进行核实"),
        Some(p) if p.name == *name => {
            let photo = p.photo.as_deref().map(|b| B64.encode(b)).unwrap_or_default();
            row(&format!(
                "<ITEM><gmsfhm></gmsfhm><result_gmsfhm>一致</result_gmsfhm></ITEM><ITEM><xm></xm><result_xm>一致\
                 </result_xm></ITEM><ITEM><xp>{photo}</xp></ITEM>"
            ))
        }
        Some(_) => {
            row("<ITEM><gmsfhm></gmsfhm><result_gmsfhm>一致</result_gmsfhm></ITEM><ITEM><xm></xm><result_xm>不一致\
             </result_xm></ITEM>")
        }
    }
}

#[cfg(test)]
mod tests {
    use vbank_crypto::SecretBytes;

    use super::super::{Fault, Simulator};
    use crate::vendor::nciic::{Nciic, decide};
    use crate::vendor::{Decision, IdentityProtocol, Verdict};

    const NOW: u64 = 1_795_776_000;

    fn ask(s: &mut Simulator, license: &str, id: &str, name: &str) -> Decision {
        let n = Nciic::new(SecretBytes::new(license.as_bytes().to_vec()), "SBM-1", "开户", "110101");
        let r = n.request(name, id, NOW).unwrap();
        let reply = s.handle(&r.path, &r.headers, &r.body, NOW);
        decide(reply.status, &reply.body)
    }

    #[test]
    fn every_answer_of_the_authority() {
        let mut s = Simulator::new().nciic("LICENSE-1");
        s.add_person("11010519491231002X", "张三", Some(vec![0xff, 0xd8, 0xff]));
        let d = ask(&mut s, "LICENSE-1", "11010519491231002X", "张三");
        assert_eq!((d.verdict, d.photo), (Verdict::Match, Some(vec![0xff, 0xd8, 0xff])));
        assert_eq!(ask(&mut s, "LICENSE-1", "11010519491231002X", "李四").verdict, Verdict::Mismatch);
        assert_eq!(ask(&mut s, "LICENSE-1", "440524188001010014", "王五").verdict, Verdict::NoRecord);
        assert!(matches!(ask(&mut s, "LICENSE-1", "11204416541220243X", "张三").verdict, Verdict::BadInput(_)));
        assert!(matches!(ask(&mut s, "WRONG", "11010519491231002X", "张三").verdict, Verdict::Misconfigured(_)));
    }

    #[test]
    fn busy_faults_and_garbage() {
        let mut s = Simulator::new().nciic("L").with_qps(1);
        s.add_person("11010519491231002X", "张三", None);
        assert_eq!(ask(&mut s, "L", "11010519491231002X", "张三").verdict, Verdict::Match);
        assert!(ask(&mut s, "L", "11010519491231002X", "张三").retryable, "-90 busy");
        let mut s = Simulator::new().nciic("L");
        s.inject(Fault::Error("-72".into()));
        assert!(matches!(ask(&mut s, "L", "11010519491231002X", "张三").verdict, Verdict::Misconfigured(_)));
        s.inject(Fault::Garbled);
        let d = ask(&mut s, "L", "11010519491231002X", "张三");
        assert!(d.billed && !d.retryable, "{d:?}");
        let r = s.handle(crate::vendor::nciic::PATH, &[], b"<not-soap", NOW);
        assert!(decide(r.status, &r.body).retryable, "a SOAP fault checked nothing");
    }
}
