//! The official VQA evaluation's answer normalisation (`vqaEval.py` of GT-Vision-Lab/VQA at
//! commit a013f00): `processPunctuation`, then `processDigitArticle`, after replacing `\n` and
//! `\t` with spaces and stripping.
//!
//! Two details of the reference, kept on purpose:
//! * it ran under Python 2, where `\d` (patterns compiled without `re.UNICODE`) matches the ASCII
//!   digits only, so only `0`-`9` count as digits here;
//! * `periodStrip.sub("", text, re.UNICODE)` passes `re.UNICODE` (32) as the *count*: at most 32
//!   periods are removed from one answer.
//!
//! `tests/fixtures/vqa_eval/cases.json` (from `scripts/generate_vqa_eval_fixtures.py`, which runs
//! the official functions) holds the cases `tests/metrics_vqa.rs` checks this port against.

/// Punctuation `processPunctuation` deletes (or turns into a space), in the reference's order.
pub const PUNCT: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

/// Number words `processDigitArticle` replaces by digits (`manualMap`).
pub const NUMBER_WORDS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

/// Words `processDigitArticle` drops.
pub const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// Most periods one `periodStrip` substitution removes (`re.UNICODE` passed as `count`).
const PERIOD_STRIP_COUNT: usize = 32;

/// The reference's `contractions` table, sorted by key (entries whose key has a capital letter
/// can never match: words are lower-cased first, as in the reference).
pub const CONTRACTIONS: [(&str, &str); 120] = [
    ("'ow'sat", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("I'dve", "I'd've"),
    ("Id've", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt", "couldn't"),
    ("couldnt've", "couldn't've"),
    ("couldve", "could've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadn'tve", "hadn't've"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("he'dve", "he'd've"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("isnt", "isn't"),
    ("it'dve", "it'd've"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightn'tve", "mightn't've"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("shant", "shan't"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shed've", "she'd've"),
    ("shouldn'tve", "shouldn't've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldve", "should've"),
    ("somebody'd", "somebodyd"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyd've", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someone'dve", "someone'd've"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("something'dve", "something'd've"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("there'dve", "there'd've"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("they'dve", "they'd've"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("we'dve", "we'd've"),
    ("wed've", "we'd've"),
    ("werent", "weren't"),
    ("weve", "we've"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("who'dve", "who'd've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldn'tve", "wouldn't've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldve", "would've"),
    ("y'all'dve", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'allll", "y'all'll"),
    ("yall", "y'all"),
    ("yall'd've", "y'all'd've"),
    ("yall'll", "y'all'll"),
    ("you'dve", "you'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

/// Python's `str.isspace` (what `split()` and `strip()` cut at): Unicode white space plus the
/// information separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `text.replace('\n', ' ').replace('\t', ' ').strip()`: what the reference does to every answer
/// (prediction and human answers) before anything else.
#[must_use]
pub fn clean_answer(text: &str) -> String {
    text.replace(['\n', '\t'], " ")
        .trim_matches(is_py_space)
        .to_string()
}

/// Whether `text` holds an ASCII digit, a comma and an ASCII digit in a row (`commaStrip`).
fn has_digit_comma_digit(text: &str) -> bool {
    text.as_bytes()
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b',' && w[2].is_ascii_digit())
}

/// The reference's `processPunctuation`: each mark of [`PUNCT`] is deleted when the original
/// text has it next to a space or holds a digit-comma-digit anywhere, else replaced by a space;
/// then periods not followed by a digit are deleted (at most 32).
#[must_use]
pub fn process_punctuation(text: &str) -> String {
    let comma_digits = has_digit_comma_digit(text);
    let mut out = text.to_string();
    for p in PUNCT {
        let spaced = text.contains(&format!("{p} ")) || text.contains(&format!(" {p}"));
        let with = if spaced || comma_digits { "" } else { " " };
        out = out.replace(p, with);
    }
    let chars: Vec<char> = out.chars().collect();
    let mut stripped = String::with_capacity(out.len());
    let mut removed = 0;
    for (i, &c) in chars.iter().enumerate() {
        let before_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c == '.' && !before_digit && removed < PERIOD_STRIP_COUNT {
            removed += 1;
        } else {
            stripped.push(c);
        }
    }
    stripped
}

/// The reference's `processDigitArticle`: lower-cased words, number words as digits
/// ([`NUMBER_WORDS`]), articles dropped ([`ARTICLES`]), contractions restored
/// ([`CONTRACTIONS`]), joined by single spaces.
#[must_use]
pub fn process_digit_article(text: &str) -> String {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(is_py_space)
        .filter(|w| !w.is_empty())
        .map(|w| {
            NUMBER_WORDS
                .iter()
                .find(|(word, _)| *word == w)
                .map_or(w, |(_, digit)| digit)
        })
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| {
            CONTRACTIONS
                .binary_search_by(|(key, _)| (*key).cmp(w))
                .map_or(w, |i| CONTRACTIONS[i].1)
        })
        .collect();
    words.join(" ")
}

/// An answer as the official VQA evaluation compares it:
/// `processDigitArticle(processPunctuation(clean_answer(text)))`.
///
/// ```
/// use fedvlm::metrics::normalize_answer;
/// assert_eq!(normalize_answer("Two dogs."), "2 dogs");
/// assert_eq!(normalize_answer("dont"), "don't");
/// assert_eq!(normalize_answer("1,000"), "1000");
/// ```
#[must_use]
pub fn normalize_answer(text: &str) -> String {
    process_digit_article(&process_punctuation(&clean_answer(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contractions_are_sorted_for_binary_search() {
        assert!(CONTRACTIONS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
