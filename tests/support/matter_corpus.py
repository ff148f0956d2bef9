"""Real-looking matters of a township (泽国镇) for the duplicate check: titles and contents as
deputies and liaison stations write them, with deliberate near-duplicates.

A matter is a place (a village, a road, the industrial park) and a topic (企业用电、园区道路、停车位、
冷链物流…) with one of its problems, said in one of the ways titles are written (关于……的建议,
a bare statement, 建议……), and a content of a few sentences: what was seen, why it matters, what
is asked. A share of the matters are near-duplicates of an earlier one: the same place and problem
said another way (another frame, a synonym, the place shortened or dropped, a word added), with a
content that keeps some of the original's sentences. Deterministic for a given seed.

Used by the duplicate tests (the index's top 10 against today's exact scoring) and by
``bench/submit.py`` (the read model filled with 100,000 open matters).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

PLACES = (
    "泽国镇",
    "泽国镇工业园区",
    "泽国镇小微企业园",
    "前洋林工业区",
    "联树村",
    "丹崖村",
    "山北村",
    "腾蛟村",
    "水澄村",
    "泽国村",
    "前洋林村",
    "下岙村",
    "横街村",
    "童家村",
    "庄前村",
    "长大村",
    "西城村",
    "三角塘村",
    "泽国大道",
    "文昌路",
    "复兴路",
    "泽楚路",
    "金泽路",
    "高铁站片区",
    "泽国中学周边",
    "镇中心小学周边",
    "泽国农贸市场",
    "泽国客运站",
    "牧屿山公园",
    "泽国卫生院",
)

#: (topic, problems, what was seen, what is asked)
TOPICS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "企业用电",
        ("企业用电容量不足", "工业用电负荷紧张", "企业频繁停电影响生产"),
        ("多家制造企业扩产受限于用电容量", "夏季用电高峰拉闸限电", "变压器老化线路负荷过重"),
        ("加快变电站扩容", "优化错峰用电安排", "更换老旧变压器和线路"),
    ),
    (
        "园区道路",
        ("道路破损", "路面坑洼积水", "道路拓宽改造滞后"),
        ("主干道多处破损货车通行困难", "雨天路面积水车辆绕行", "道路狭窄大货车会车困难"),
        ("尽快修复破损路面", "将园区道路纳入年度改造计划", "拓宽园区主干道"),
    ),
    (
        "停车位",
        ("停车位不足", "占道停车严重", "停车收费不合理"),
        ("职工车辆无处停放", "车辆占用人行道和消防通道", "周边停车场收费标准偏高"),
        ("新建公共停车场", "规划施划停车位", "规范停车收费"),
    ),
    (
        "冷链物流",
        ("农产品冷链物流设施缺乏", "冷库容量不足", "冷链运输成本偏高"),
        ("西瓜等特色农产品缺少冷链仓储损耗大", "旺季冷库一库难求", "冷藏车辆少运输费用高"),
        ("建设区域冷链物流中心", "扶持农户建设小型冷库", "补贴冷链运输费用"),
    ),
    (
        "饮用水",
        ("饮用水水质不达标", "自来水水压不足", "供水管网老化"),
        ("自来水有异味且浑浊", "高峰时段高层住户停水", "供水管道锈蚀经常爆管"),
        ("加强水质检测", "新建加压泵站", "改造老旧供水管网"),
    ),
    (
        "污水管网",
        ("污水管网未覆盖", "生活污水直排河道", "雨污分流不彻底"),
        ("村里生活污水无处排放", "河道水体发黑发臭", "雨天污水外溢"),
        ("延伸污水管网", "开展雨污分流改造", "加强污水排放执法"),
    ),
    (
        "路灯",
        ("路灯损坏未修", "夜间照明不足", "路灯开关时间不合理"),
        ("多盏路灯长期不亮", "夜间道路漆黑存在安全隐患", "天黑后路灯迟迟不亮"),
        ("及时维修路灯", "增设路灯", "调整路灯开关时间"),
    ),
    (
        "公交线路",
        ("公交线路覆盖不足", "公交班次过少", "缺少公交候车亭"),
        ("偏远村庄没有公交通达", "候车时间超过半小时", "群众在烈日下候车"),
        ("优化公交线路", "加密公交班次", "增设公交候车亭"),
    ),
    (
        "入学",
        ("幼儿园学位紧张", "小学学位不足", "外来务工人员子女入学难"),
        ("适龄儿童报名人数远超招生计划", "班额过大教学质量下降", "积分入学门槛偏高"),
        ("新建公办幼儿园", "扩建镇中心小学", "放宽随迁子女入学条件"),
    ),
    (
        "垃圾清运",
        ("垃圾清运不及时", "垃圾分类设施不足", "垃圾中转站异味扰民"),
        ("垃圾桶满溢无人清理", "小区没有分类投放点", "中转站臭气影响周边居民"),
        ("增加清运频次", "增设分类投放设施", "对中转站进行除臭改造"),
    ),
    (
        "河道整治",
        ("河道淤积严重", "河道水质黑臭", "河道护岸坍塌"),
        ("河道多年未清淤排涝能力下降", "河面漂浮垃圾水质变差", "护岸坍塌威胁农田"),
        ("开展河道清淤", "实施河道综合整治", "修复坍塌护岸"),
    ),
    (
        "充电设施",
        ("电动汽车充电桩不足", "电动自行车充电难", "充电设施布局不合理"),
        ("新能源汽车增多但充电桩少", "居民楼道私拉电线充电存在火灾隐患", "充电桩集中在少数地段"),
        ("增建公共充电桩", "建设集中充电棚", "统筹规划充电设施布局"),
    ),
    (
        "老旧小区",
        ("老旧小区改造进度慢", "老旧小区加装电梯难", "老旧小区管网老化"),
        ("小区建成三十多年设施陈旧", "高龄老人上下楼困难", "下水道经常堵塞"),
        ("加快老旧小区改造", "出台加装电梯补助政策", "更新小区地下管网"),
    ),
    (
        "医疗服务",
        ("卫生院医疗力量薄弱", "看病排队时间长", "村卫生室缺医少药"),
        ("专科医生少群众只能去市区就医", "挂号缴费排长队", "村卫生室常用药品短缺"),
        ("引进专科医生", "推广预约诊疗", "充实村卫生室药品"),
    ),
    (
        "养老服务",
        ("居家养老服务中心缺乏", "老年食堂运营困难", "养老机构床位不足"),
        ("独居老人日常照料无人负责", "老年食堂资金缺口大", "养老院排队入住"),
        ("建设居家养老服务中心", "给予老年食堂运营补贴", "增加养老床位"),
    ),
    (
        "交通安全",
        ("路口缺少红绿灯", "学校周边交通拥堵", "人行道被占用"),
        ("车流量大行人过马路危险", "上下学时段车辆堵塞", "商户占道经营行人走机动车道"),
        ("增设交通信号灯", "在学校周边设置接送区", "整治占道经营"),
    ),
    (
        "消防安全",
        ("消防通道被占用", "出租房消防隐患突出", "消防设施缺失"),
        ("车辆堵塞消防通道", "出租房人员密集电线乱拉", "灭火器过期消火栓无水"),
        ("清理消防通道", "开展出租房消防安全整治", "配齐消防设施"),
    ),
    (
        "噪音扰民",
        ("夜间施工噪音扰民", "工厂噪音扰民", "广场舞噪音扰民"),
        ("工地深夜施工居民无法休息", "厂房机器昼夜运转", "广场舞音响音量过大"),
        ("严格夜间施工审批", "督促企业采取降噪措施", "规范广场舞活动时间和音量"),
    ),
    (
        "网络信号",
        ("农村网络信号差", "山区手机信号盲区", "宽带网速慢"),
        ("村民在家打电话信号断续", "山区无手机信号遇险难求助", "网速慢影响网上办事"),
        ("增建通信基站", "消除信号盲区", "推进宽带提速"),
    ),
    (
        "企业招工",
        ("企业招工难", "技能人才短缺", "外来员工住房难"),
        ("制造企业一线工人缺口大", "数控等技术工人招不到", "员工宿舍不足租房贵"),
        ("搭建用工对接平台", "加强职业技能培训", "建设人才公寓"),
    ),
    (
        "企业融资",
        ("小微企业融资难", "贷款审批周期长", "融资成本偏高"),
        ("小微企业缺少抵押物贷不到款", "银行贷款审批要一个多月", "民间借贷利率高"),
        ("推广信用贷款", "简化贷款审批流程", "设立转贷应急资金"),
    ),
    (
        "厂房租金",
        ("小微企业园厂房租金过高", "闲置厂房利用率低", "厂房产权分割难"),
        ("租金逐年上涨企业负担重", "部分厂房长期闲置", "企业无法办理产权分割"),
        ("稳定厂房租金", "盘活闲置厂房", "出台产权分割办法"),
    ),
    (
        "农田水利",
        ("农田灌溉设施老化", "机耕路破损", "农田排涝不畅"),
        ("灌溉渠道渗漏严重", "农机无法下田", "暴雨后农田长时间积水"),
        ("改造灌溉设施", "修建机耕路", "疏通农田排涝沟渠"),
    ),
    (
        "快递进村",
        ("农村快递进村难", "快递网点收费乱", "快递包裹丢失"),
        ("快递只送到镇上村民往返取件", "网点对取件加收费用", "包裹被冒领无人负责"),
        ("建设村级快递服务点", "规范快递网点收费", "加强快递行业监管"),
    ),
    (
        "农贸市场",
        ("农贸市场环境脏乱差", "流动摊贩占道经营", "农贸市场停车难"),
        ("市场地面污水横流", "摊贩沿路摆摊堵塞交通", "买菜群众车辆无处停放"),
        ("对农贸市场提升改造", "设置临时疏导点", "在市场周边增设停车位"),
    ),
    (
        "健身场地",
        ("缺少健身场地", "公园配套设施不足", "健身器材损坏"),
        ("居民只能在马路边锻炼", "公园缺少公厕和座椅", "健身器材锈蚀存在安全隐患"),
        ("建设全民健身中心", "完善公园配套设施", "及时更换损坏的健身器材"),
    ),
    (
        "货运通道",
        ("跨区域货运通道拥堵", "大货车超载超速", "货车违停"),
        ("至市区的货运通道高峰拥堵", "大货车超速行驶事故多发", "货车夜间停在路边影响通行"),
        ("统筹货运交通组织", "加强货车超限超载治理", "建设货车停车场"),
    ),
    (
        "排涝",
        ("雨季道路积水内涝", "排涝泵站能力不足", "地下通道积水"),
        ("每逢暴雨道路变成河", "泵站排水能力跟不上", "地下通道积水车辆熄火"),
        ("提升城区排涝标准", "扩建排涝泵站", "改造地下通道排水系统"),
    ),
    (
        "文化礼堂",
        ("文化礼堂利用率低", "文化活动场所缺乏", "文化礼堂管理不规范"),
        ("文化礼堂平时大门紧闭", "村民没有文体活动场所", "礼堂设施无人维护"),
        ("丰富文化礼堂活动", "建设村级文化活动中心", "建立礼堂管理制度"),
    ),
    (
        "营商环境",
        ("企业审批流程繁琐", "涉企检查过多", "惠企政策兑现慢"),
        ("开办企业要跑多个部门", "各部门轮番检查影响生产", "补助资金迟迟不到位"),
        ("推行并联审批", "统筹涉企检查", "加快惠企政策兑现"),
    ),
)

EFFECTS = ("影响企业生产", "影响群众出行", "影响居民生活", "存在安全隐患", "群众反映强烈")
SYNONYMS = (
    ("不足", "紧张"),
    ("破损", "损坏"),
    ("缺乏", "不足"),
    ("严重", "突出"),
    ("困难", "难"),
    ("扰民", "影响居民休息"),
    ("老化", "陈旧"),
    ("拥堵", "堵塞"),
)
OPENINGS = ("据群众反映，", "经代表走访调研发现，", "近年来，", "目前，", "选民多次反映，", "")
CLOSINGS = (
    "请有关部门尽快研究解决。",
    "希望镇政府高度重视。",
    "恳请相关部门予以支持。",
    "此事关系群众切身利益。",
    "",
)
FRAMES = (
    "关于{place}{problem}的建议",
    "{place}{problem}",
    "关于解决{place}{problem}问题的建议",
    "{place}{problem}{effect}",
    "建议{request}解决{place}{problem}问题",
    "关于{place}{topic}问题的建议",
    "{place}{problem}问题亟待解决",
)


def _title(rng: random.Random, place: str, topic: str, problem: str, request: str) -> str:
    frame = rng.choice(FRAMES)
    return frame.format(place=place, topic=topic, problem=problem, request=request, effect=rng.choice(EFFECTS))


def _content(rng: random.Random, place: str, seen: str, request: str, extra: str) -> str:
    sentences = [
        f"{rng.choice(OPENINGS)}{place}{seen}，{extra}。",
        f"建议{request}。",
        rng.choice(CLOSINGS),
    ]
    return "".join(sentences)


def _near(rng: random.Random, title: str, content: str, place: str) -> tuple[str, str]:
    """Another way of saying the same matter: one or two edits of the title, a content that keeps
    some of the original's sentences."""
    edits = rng.sample(("synonym", "suffix", "place", "frame", "drop"), k=rng.choice((1, 2)))
    new = title
    for edit in edits:
        if edit == "synonym":
            pairs = [p for p in SYNONYMS if p[0] in new]
            if pairs:
                old, repl = rng.choice(pairs)
                new = new.replace(old, repl, 1)
        elif edit == "suffix":
            new = new.removesuffix("的建议").removesuffix("问题") + rng.choice(
                ("严重", "问题突出", "亟需解决", "的问题")
            )
        elif edit == "place" and place in new and len(place) > 3:
            new = new.replace(place, place.removeprefix("泽国镇") or place[-3:], 1)
        elif edit == "frame":
            new = new.removeprefix("关于").removesuffix("的建议") if new.startswith("关于") else f"关于{new}的建议"
        elif edit == "drop" and len(new) > 8:
            at = rng.randrange(2, len(new) - 2)
            new = new[:at] + new[at + 1 :]
    sentences = [s + "。" for s in content.split("。") if s]
    kept = [s for s in sentences if rng.random() < 0.7] or sentences[:1]
    if rng.random() < 0.5:
        kept.insert(rng.randrange(len(kept) + 1), rng.choice(CLOSINGS) or "群众意见较大。")
    return new, "".join(kept)


def matters(count: int, *, seed: int = 1, near_share: float = 0.3) -> Iterator[tuple[str, str]]:
    """``count`` matters as (title, content), about ``near_share`` of them near-duplicates of an
    earlier one."""
    rng = random.Random(seed)
    made: list[tuple[str, str, str]] = []
    for _ in range(count):
        if made and rng.random() < near_share:
            title, content, place = rng.choice(made)
            title, content = _near(rng, title, content, place)
        else:
            place = rng.choice(PLACES)
            topic, problems, seen, requests = rng.choice(TOPICS)
            problem, request = rng.choice(problems), rng.choice(requests)
            title = _title(rng, place, topic, problem, request)
            extra = rng.choice((*seen, *EFFECTS))
            content = _content(rng, place, rng.choice(seen), request, extra)
        made.append((title, content, place))
        yield title, content


async def fill_read_model(
    engine, jurisdiction: str, texts: list[tuple[str, str]], *, registered_every: int = 5, batch: int = 1000
) -> list[str]:
    """Intake's matter list (and its title index) with a submitted matter per (title, content),
    every ``registered_every``-th of them then registered (立案): the events ``domain.Matter``
    makes, applied by ``MatterListProjection`` as its projector applies a batch, straight into
    ``engine``'s database (no stream: the read model alone, filled fast). Returns their ids."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from contracts.envelope import Actor, new_id, utcnow
    from contracts.intake import Channel, MatterData, MatterKind, Submitter
    from services.intake.domain import Matter
    from services.intake.projections import MatterListProjection, matters_metadata
    from services.runtime.es.eventstore import envelopes_of

    actor = Actor(principal_id="staff-1", role="committee", name="工委", jurisdiction=jurisdiction)
    lead = Submitter(id="deputy-1", name="王代表")
    projection = MatterListProjection()
    sessions = async_sessionmaker(engine)
    async with engine.begin() as conn:
        await conn.run_sync(matters_metadata.create_all)

    def commit(matter: Matter, events: list) -> list:
        made = envelopes_of(
            matter, events, [new_id() for _ in events], jurisdiction, utcnow(), actor, new_id(), None, {}
        )
        for event in events:
            matter.apply(event)
        matter.version += 1
        return made

    ids: list[str] = []
    for start in range(0, len(texts), batch):
        envelopes = []
        for i, (title, content) in enumerate(texts[start : start + batch], start):
            matter = Matter(id=new_id())
            data = MatterData(
                kind=MatterKind.suggestion,
                title=title,
                content=content,
                lead=lead,
                channel=Channel.liaison_station,
                raised_in=jurisdiction,
            )
            envelopes += commit(matter, matter.submit(data))
            if registered_every and i % registered_every == 0:
                envelopes += commit(matter, matter.register(2026, i + 1, "泽国"))
            ids.append(matter.id)
        async with sessions() as session, session.begin():
            await projection.apply_batch(session, envelopes)
    return ids


async def title_index(engine) -> tuple[dict, dict, dict]:
    """The title index as stored: ({matter_id: (jurisdiction, text, content grams)}, {matter_id: {gram:
    grams}}, {(jurisdiction, gram): matters}), counts of zero left out."""
    from sqlalchemy import select

    from services.intake.projections import title_gram_counts, title_grams, title_texts

    async with engine.connect() as conn:
        rows = (await conn.execute(select(title_texts))).all()
        texts = {r.matter_id: (r.jurisdiction, r.text, r.content_grams) for r in rows}
        numbered = {r.no: r.matter_id for r in rows}
        assert len(numbered) == len(texts), "a matter twice in the index, or two under one number"
        grams: dict[str, dict[str, int]] = {}
        for row in await conn.execute(select(title_grams)):
            grams.setdefault(numbered[row.no], {})[row.gram] = row.grams
            assert row.jurisdiction == texts[numbered[row.no]][0]
        counts = {
            (r.jurisdiction, r.gram): r.matters for r in await conn.execute(select(title_gram_counts)) if r.matters
        }
    return texts, grams, counts


async def title_index_expected(engine) -> tuple[dict, dict, dict]:
    """The title index as the matter list says it should be: every open matter whose title has
    a gram, and nothing else."""
    from collections import Counter

    from sqlalchemy import select

    from services.intake.projections import matters
    from services.intake.similarity import OPEN_STATUSES, content_text, grams_of, title_text

    texts: dict[str, tuple[str, str, str]] = {}
    grams: dict[str, dict[str, int]] = {}
    counts: Counter = Counter()
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(matters.c.id, matters.c.jurisdiction, matters.c.title, matters.c.status, matters.c.content)
        )
        for row in rows:
            text = title_text(row.title or "")
            if row.status in OPEN_STATUSES and text:
                own = grams_of(text)
                # the content's distinct bigrams, sorted, separated by spaces
                texts[row.id] = (row.jurisdiction, text, " ".join(sorted(grams_of(content_text(row.content)))))
                grams[row.id] = dict.fromkeys(own, len(own))
                counts.update((row.jurisdiction, gram) for gram in own)
    return texts, grams, dict(counts)
