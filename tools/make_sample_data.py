#!/usr/bin/env python3
"""Generate the small Chinese character-level NER sample shipped with the trainer.

The sample is written for this project: the lexicons (person names, locations,
organizations) and the sentence templates below are hand-written, and a fixed
seed turns them into sentences deterministically. Nothing is copied from any
corpus.

Usage (from the repository root)::

    python tools/make_sample_data.py           # (re)write trainer/data/sample_data/*
    python tools/make_sample_data.py --check   # exit 1 if the committed files differ

Output, in ``trainer/data/sample_data/``:

* ``train.txt``, ``dev.txt``, ``test.txt``: CoNLL form, one character per line
  (``字 B-PER``, a single space), a blank line between sentences, IOB2 tags
  over the types PER, LOC and ORG.
* ``predict.txt``: raw sentences, one per line, for ``text`` format prediction.

Each lexicon category keeps roughly a quarter of its entries out of the
training split; dev and test draw some of their fillers from those held-out
entries, so evaluation sees entity strings that training never saw.

Standard library only. The statistics printed at the end are the numbers
quoted in ``trainer/data/sample_data/README.md``.
"""

import argparse
import os
import random
import re
import sys

DEFAULT_SEED = 20240611

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT_DIR = os.path.join(REPO_ROOT, "trainer", "data", "sample_data")

# Sentences per labelled split, and raw sentences for predict.txt.
SPLIT_SIZES = (("train", 400), ("dev", 80), ("test", 80))
PREDICT_SIZE = 20

# Probability that a dev/test/predict entity slot is filled from held-out entries.
HELD_OUT_PROB = 0.35

ENTITY_TYPES = ("PER", "LOC", "ORG")
TAGS = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))

# Punctuation the sentences may use (full-width Chinese forms only).
PUNCTUATION = "，。！？、“”：；"

# --- Lexicons ----------------------------------------------------------------
# Every entry is invented or generic for this project. Within a category, every
# fourth entry (index 3, 7, 11, ...) is held out of the training split.

PERSON_NAMES = [
    "王小明", "李华", "张伟", "欧阳晨", "刘洋", "陈静", "杨帆", "赵雷",
    "黄丽", "周杰", "吴敏", "徐磊", "孙悦", "马超", "朱婷", "胡斌",
    "郭晓东", "何军", "高明", "林芳", "罗平", "郑凯", "梁雪", "谢文",
    "宋佳", "唐宁", "韩梅梅", "冯涛", "邓超群", "曹阳", "彭丽华", "曾志强",
    "萧雨", "田甜", "董建国", "潘越", "袁立", "蒋春燕", "蔡明亮", "余秋",
    "杜鹏", "叶青", "程远", "魏来", "司马光明", "诸葛明远", "上官雨晴", "苏小妹",
]

# Locations by kind, so templates can ask for a city, a river, ...
CITIES = [
    "北京", "上海", "杭州", "广州", "深圳", "南京", "成都", "武汉",
    "西安", "重庆", "天津", "苏州", "青岛", "厦门", "长沙", "昆明",
    "哈尔滨", "乌鲁木齐", "大连", "洛阳",
]
PROVINCES = [
    "四川省", "浙江省", "广东省", "云南省", "山东省", "黑龙江省",
    "内蒙古自治区", "新疆维吾尔自治区", "湖南省", "广西壮族自治区", "江苏省", "海南省",
]
COUNTRIES = [
    "法国", "日本", "德国", "英国", "美国", "巴西", "埃及", "澳大利亚",
    "新西兰", "加拿大", "意大利", "俄罗斯",
]
MOUNTAINS = ["泰山", "黄山", "峨眉山", "华山", "喜马拉雅山", "武夷山", "庐山", "长白山"]
WATERS = ["长江", "黄河", "珠江", "西湖", "太湖", "青海湖", "洞庭湖", "松花江"]

# Organizations by kind.
SCHOOLS = [
    "清华大学", "北京大学", "复旦大学", "浙江大学", "青山中学", "阳光小学",
    "云帆大学", "北辰医学院", "明德书院", "东湖师范学院", "星海音乐学院", "南山外国语学校",
]
COMPANIES = [
    "华为公司", "中国银行", "阿里巴巴", "腾讯", "小米科技", "东方航空公司",
    "星辰软件公司", "蓝海科技有限公司", "长风汽车集团", "交通银行", "远航物流公司", "晨光文具厂",
    "大地保险公司", "金穗农业合作社", "绿叶食品公司", "海风电视台",
]
AGENCIES = [
    "联合国", "科学院", "世界卫生组织", "国家气象局", "教育部", "外交部",
    "新华社", "中央电视台", "人民日报社", "国家图书馆", "故宫博物院", "红十字会",
    "绿野环保协会", "天宇航天研究所", "足球协会", "市公安局", "环境保护局", "光华出版社",
]
HOSPITALS = ["人民医院", "市第一人民医院", "儿童医院", "中医院", "协和医院", "市中心医院"]

# Slot name -> (entity type or None, list of fillers or (low, high) number range).
ENTITY_SLOTS = {
    "PER": ("PER", PERSON_NAMES),
    "CITY": ("LOC", CITIES),
    "PROVINCE": ("LOC", PROVINCES),
    "COUNTRY": ("LOC", COUNTRIES),
    "MOUNTAIN": ("LOC", MOUNTAINS),
    "WATER": ("LOC", WATERS),
    "LOC": ("LOC", CITIES + PROVINCES + COUNTRIES + MOUNTAINS + WATERS),
    "SCHOOL": ("ORG", SCHOOLS),
    "COMPANY": ("ORG", COMPANIES),
    "AGENCY": ("ORG", AGENCIES),
    "HOSPITAL": ("ORG", HOSPITALS),
    "ORG": ("ORG", SCHOOLS + COMPANIES + AGENCIES + HOSPITALS),
}
# Plain (non-entity) time words: any time, past only, future only.
TIME_WORDS = {
    "TIME": ["今天", "周末", "上午", "下午", "晚上", "中午"],
    "PAST": ["昨天", "前天", "上周", "去年", "上个月", "今天上午"],
    "FUTURE": ["明天", "后天", "下周", "周末", "下个月", "明天下午"],
}
NUMBER_SLOTS = {
    "YEAR": (2015, 2025),
    "MONTH": (1, 12),
    "DAY": (1, 28),
    "NUM": (3, 99),
    "SMALL": (2, 9),
    "AGE": (6, 18),
}

# --- Sentence templates --------------------------------------------------------
# {SLOT} is replaced by a filler; entity slots are tagged, others are plain O text.
TEMPLATES = [
    "{PER}{PAST}在{CITY}参加了{ORG}举办的会议。",
    "{PER}是{SCHOOL}的一名老师。",
    "{YEAR}年，{PER}考入了{SCHOOL}。",
    "{COMPANY}宣布将在{CITY}开设新的办公室。",
    "{PER}和{PER}一起去{CITY}旅游了。",
    "你听说了吗？{PER}要去{CITY}工作了！",
    "{CITY}的冬天和{CITY}很不一样。",
    "据{AGENCY}消息，{CITY}{PAST}下了一场大雨。",
    "{PER}说：“我很喜欢{CITY}的美食。”",
    "{ORG}的{NUM}名工作人员来到{PROVINCE}开展调查。",
    "我们{FUTURE}去爬{MOUNTAIN}吧？",
    "{WATER}边的风景真美啊！",
    "{PER}在{COMPANY}工作了{SMALL}年。",
    "{PER}、{PER}和{PER}是大学同学。",
    "{PER}毕业于{SCHOOL}，现在是{COMPANY}的工程师。",
    "{COUNTRY}和{COUNTRY}签署了新的合作协议。",
    "{AGENCY}发布通知，{MONTH}月{DAY}日起{CITY}将实行新的交通规定。",
    "这本书是{PER}写的，你读过吗？",
    "{PER}的老家在{PROVINCE}，离{CITY}不远。",
    "请问去{CITY}的火车几点出发？",
    "{YEAR}年{MONTH}月，{COMPANY}在{CITY}成立。",
    "{PER}从{COUNTRY}留学回来后，加入了{ORG}。",
    "{CITY}市民在{WATER}边举行了长跑比赛。",
    "“{PER}，快来帮忙！”{PER}大声喊道。",
    "{AGENCY}表示，{PROVINCE}今年的粮食产量增长了百分之{SMALL}。",
    "{PER}获得了{ORG}颁发的优秀奖。",
    "听说{COMPANY}要在{COUNTRY}建一座工厂？",
    "{PER}带着孩子去{MOUNTAIN}看日出。",
    "{SCHOOL}和{COMPANY}联合成立了人工智能实验室。",
    "{PER}是{PROVINCE}人，{YEAR}年来到{CITY}。",
    "{PER}在{HOSPITAL}做了手术，现在恢复得很好。",
    "{WATER}的水很清，很多人在那里钓鱼。",
    "{AGENCY}的{PER}接受了记者采访。",
    "{CITY}、{CITY}和{CITY}都是著名的旅游城市。",
    "为什么{PER}没有来参加{ORG}的活动？",
    "{PER}今年{AGE}岁，在{CITY}上学。",
    "{COUNTRY}总统{PAST}访问了{COUNTRY}。",
    "{HOSPITAL}的医生们{PAST}去{PROVINCE}义诊了。",
    "{PER}给{PER}寄了一封信，信里写着：“{CITY}见！”",
    "{SCHOOL}的{NUM}名学生参观了{AGENCY}。",
    # Sentences without entities.
    "{TIME}天气很好，我们去公园散步。",
    "这家餐厅的菜很好吃，价格也不贵。",
    "他{PAST}买了{SMALL}本书和一支笔。",
    "我们班有{NUM}名同学，大家都很努力。",
    "会议结束后，大家一起吃了晚饭。",
    "你{FUTURE}有空吗？我们一起去看电影吧！",
    "雨下得很大，路上的车都开得很慢。",
    "小朋友们{TIME}在操场上开心地玩耍。",
    "{YEAR}年的夏天特别热，很多人都不愿意出门。",
    "妈妈说：“先写作业，再看电视。”",
]

SLOT_RE = re.compile(r"\{([A-Z]+)\}")


def _is_allowed_char(ch):
    """Common CJK (GB2312 hanzi), ASCII digits or the allowed punctuation."""
    if ch.isascii():
        return ch.isdigit()
    if ch in PUNCTUATION:
        return True
    if not "\u4e00" <= ch <= "\u9fff":
        return False
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def _split_pool(entries):
    """(train-visible entries, held-out entries): every fourth entry is held out."""
    train = [e for i, e in enumerate(entries) if i % 4 != 3]
    held = [e for i, e in enumerate(entries) if i % 4 == 3]
    return train, held


# Held-out status is decided per entity string, over the base categories, so a
# held-out city stays held out when it fills the generic {LOC} slot too.
_HELD_OUT = set()
for _entries in (PERSON_NAMES, CITIES, PROVINCES, COUNTRIES, MOUNTAINS, WATERS,
                 SCHOOLS, COMPANIES, AGENCIES, HOSPITALS):
    _HELD_OUT.update(_split_pool(_entries)[1])


def _fill(template, rng, allow_held_out):
    """Fill one template. Returns (text, tags) with one tag per character."""
    chars, tags = [], []
    used = set()
    pos = 0
    for match in SLOT_RE.finditer(template):
        literal = template[pos:match.start()]
        chars.extend(literal)
        tags.extend(["O"] * len(literal))
        pos = match.end()
        slot = match.group(1)
        if slot in ENTITY_SLOTS:
            etype, entries = ENTITY_SLOTS[slot]
            seen = [e for e in entries if e not in _HELD_OUT and e not in used]
            held = [e for e in entries if e in _HELD_OUT and e not in used]
            if allow_held_out and held and rng.random() < HELD_OUT_PROB:
                filler = rng.choice(held)
            else:
                filler = rng.choice(seen)
            used.add(filler)
            chars.extend(filler)
            tags.append("B-" + etype)
            tags.extend(["I-" + etype] * (len(filler) - 1))
        elif slot in TIME_WORDS:
            filler = rng.choice(TIME_WORDS[slot])
            chars.extend(filler)
            tags.extend(["O"] * len(filler))
        elif slot in NUMBER_SLOTS:
            low, high = NUMBER_SLOTS[slot]
            filler = str(rng.randint(low, high))
            chars.extend(filler)
            tags.extend(["O"] * len(filler))
        else:
            raise ValueError(f"unknown slot {{{slot}}} in template {template!r}")
    literal = template[pos:]
    chars.extend(literal)
    tags.extend(["O"] * len(literal))
    text = "".join(chars)
    bad = sorted({ch for ch in text if not _is_allowed_char(ch)})
    if bad:
        raise ValueError(f"disallowed characters {bad!r} in {text!r}")
    return text, tags


def _template_order(rng, count):
    """`count` templates: repeated shuffled passes so every template is used evenly."""
    order = []
    while len(order) < count:
        batch = list(TEMPLATES)
        rng.shuffle(batch)
        order.extend(batch)
    return order


def _generate_split(name, count, seen_texts, seed):
    """`count` unique (text, tags) sentences; texts are added to `seen_texts`."""
    rng = random.Random(f"{seed}:{name}")
    allow_held_out = name != "train"
    sentences = []
    templates = _template_order(rng, count * 3)
    for template in templates:
        if len(sentences) == count:
            break
        for _ in range(20):
            text, tags = _fill(template, rng, allow_held_out)
            if text not in seen_texts:
                break
        else:
            continue  # this template is exhausted; move on to the next one
        seen_texts.add(text)
        sentences.append((text, tags))
    if len(sentences) != count:
        raise RuntimeError(f"could only make {len(sentences)} unique sentences for {name}")
    return sentences


def entities(tags, text):
    """(type, string) of every entity in one IOB2-tagged sentence."""
    found = []
    start = etype = None
    for i, tag in enumerate(list(tags) + ["O"]):
        if start is not None and not tag == "I-" + etype:
            found.append((etype, text[start:i]))
            start = etype = None
        if tag.startswith("B-"):
            start, etype = i, tag[2:]
    return found


def to_conll(sentences):
    blocks = ["\n".join(f"{ch} {tag}" for ch, tag in zip(text, tags))
              for text, tags in sentences]
    return "\n\n".join(blocks) + "\n"


def generate_sentences(seed=DEFAULT_SEED):
    """{"train"|"dev"|"test": [(text, tags)], "predict": [text]}."""
    seen_texts = set()
    result = {}
    for name, count in SPLIT_SIZES:
        result[name] = _generate_split(name, count, seen_texts, seed)
    result["predict"] = [text for text, _ in
                         _generate_split("predict", PREDICT_SIZE, seen_texts, seed)]
    return result


def generate(seed=DEFAULT_SEED):
    """{file name: file content} of every generated file."""
    sentences = generate_sentences(seed)
    files = {f"{name}.txt": to_conll(sentences[name]) for name, _ in SPLIT_SIZES}
    files["predict.txt"] = "\n".join(sentences["predict"]) + "\n"
    return files


def stats_table(seed=DEFAULT_SEED):
    """Markdown table of counts per split (quoted verbatim in the README)."""
    sentences = generate_sentences(seed)
    train_entities = {e for text, tags in sentences["train"] for e in entities(tags, text)}
    lines = [
        "| split | sentences | characters | PER | LOC | ORG | entities unseen in train |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, _ in SPLIT_SIZES:
        ents = [e for text, tags in sentences[name] for e in entities(tags, text)]
        chars = sum(len(text) for text, _ in sentences[name])
        per_type = [sum(1 for t, _ in ents if t == etype) for etype in ENTITY_TYPES]
        unseen = len({e for e in ents if e not in train_entities})
        unseen_cell = "-" if name == "train" else f"{unseen} distinct"
        lines.append(f"| {name} | {len(sentences[name])} | {chars} | "
                     + " | ".join(str(n) for n in per_type) + f" | {unseen_cell} |")
    predict = sentences["predict"]
    lines.append(f"| predict (raw) | {len(predict)} | {sum(len(t) for t in predict)} "
                 "| - | - | - | - |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory; exit 1 if the files on disk differ")
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR,
                        help="output folder (default: trainer/data/sample_data)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)

    files = generate(args.seed)
    if args.check:
        stale = []
        for name, content in sorted(files.items()):
            path = os.path.join(args.out_dir, name)
            try:
                with open(path, encoding="utf-8", newline="") as f:
                    on_disk = f.read()
            except FileNotFoundError:
                on_disk = None
            if on_disk != content:
                stale.append(path)
        if stale:
            print("sample data out of date (run python tools/make_sample_data.py):",
                  file=sys.stderr)
            for path in stale:
                print("  " + path, file=sys.stderr)
            return 1
        print(f"sample data up to date in {args.out_dir}")
        return 0

    os.makedirs(args.out_dir, exist_ok=True)
    for name, content in sorted(files.items()):
        path = os.path.join(args.out_dir, name)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(content)
        print(f"wrote {path} ({len(content.encode('utf-8'))} bytes)")
    print()
    print(stats_table(args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
