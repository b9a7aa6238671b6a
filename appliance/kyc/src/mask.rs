//! What a teller, a log or an export sees of personal data. By default a teller sees an ID number's first six and
//! last four characters (110101********8888) and a name with its middle hidden (张*, 张*三, 欧阳*娜); banks differ, so
//! the rules are configurable. Logs and exports carry neither: they carry a keyed HMAC-SM3 token, the same for the
//! same value under one key, so records can be joined without the data.

/// How much of an identifier to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Characters shown at the start of an ID number.
    pub id_front: usize,
    /// Characters shown at the end.
    pub id_back: usize,
}

impl Default for Rules {
    /// First six (the region) and last four, as most banks show.
    fn default() -> Self {
        Rules { id_front: 6, id_back: 4 }
    }
}

impl Rules {
    /// An identifier with everything but the configured ends replaced by `*`.
    pub fn id(&self, number: &str) -> String {
        let chars: Vec<char> = number.trim().chars().collect();
        if chars.len() <= self.id_front + self.id_back {
            return "*".repeat(chars.len());
        }
        let hidden = chars.len() - self.id_front - self.id_back;
        let mut out: String = chars[..self.id_front].iter().collect();
        out.push_str(&"*".repeat(hidden));
        out.extend(&chars[chars.len() - self.id_back..]);
        out
    }
}

/// A name with its middle hidden: one character shows `*`; two, the first (张*); three, the first and last (张*三);
/// four or more, the first two and the last (欧阳*娜), which keeps a compound surname. A name in Latin letters keeps
/// each word's initial (J*** S****).
pub fn name(name: &str) -> String {
    let name = name.trim();
    if name.is_ascii() && name.contains(' ') {
        return name
            .split_whitespace()
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| format!("{f}{}", "*".repeat(c.count()))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    let c: Vec<char> = name.chars().collect();
    match c.len() {
        0 => String::new(),
        1 => "*".into(),
        2 => format!("{}*", c[0]),
        3 => format!("{}*{}", c[0], c[2]),
        n => format!("{}{}*{}", c[0], c[1], c[n - 1]),
    }
}

/// The token logs and exports carry instead of a personal value: `tok_` and 16 bytes of HMAC-SM3 over the kind and
/// the value under `key` (kept by the service, never logged), hex.
pub fn token(key: &[u8], kind: &str, value: &str) -> String {
    let mut data = Vec::with_capacity(kind.len() + 1 + value.len());
    data.extend_from_slice(kind.as_bytes());
    data.push(0);
    data.extend_from_slice(value.trim().as_bytes());
    let mac = vbank_crypto::hash::hmac_sm3(key, &data);
    format!("tok_{}", vbank_crypto::to_hex(&mac[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers_show_their_ends_as_configured() {
        assert_eq!(Rules::default().id("110101199001018888"), "110101********8888");
        assert_eq!(Rules { id_front: 3, id_back: 4 }.id("110101199001018888"), "110***********8888");
        assert_eq!(Rules { id_front: 1, id_back: 1 }.id("11010119900101888X"), "1****************X");
        assert_eq!(Rules::default().id("12345"), "*****", "too short to show anything");
    }

    #[test]
    fn names_keep_what_the_banks_keep() {
        assert_eq!(name("张三"), "张*");
        assert_eq!(name("张小三"), "张*三");
        assert_eq!(name("欧阳娜娜"), "欧阳*娜");
        assert_eq!(name("迪丽热巴·迪力木拉提"), "迪丽*提");
        assert_eq!(name("John Smith"), "J*** S****");
        assert_eq!(name("王"), "*");
    }

    #[test]
    fn tokens_join_without_revealing() {
        let k = b"log-token-key-0123456789abcdef";
        let t = token(k, "id", "11010519491231002X");
        assert_eq!(t, token(k, "id", " 11010519491231002X "), "the same value, the same token");
        assert_ne!(t, token(k, "name", "11010519491231002X"), "kinds do not collide");
        assert_ne!(t, token(b"another-key", "id", "11010519491231002X"));
        assert!(t.starts_with("tok_") && t.len() == 36 && !t.contains("1101051949"));
    }
}
