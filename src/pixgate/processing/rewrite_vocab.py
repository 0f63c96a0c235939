"""The offline prompt expander's vocabularies (processing/rewrite.py): the phrases it may
append, per language and subject category, and the keywords that pick the category.

Phrases are written as one string per group with `;` between phrases (so a group stays a
few lines long) and split at import; no phrase contains the languages' separators (`,`,
`，`), so an expanded prompt reads as a plain list of phrases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Language = Literal["zh", "en"]
Category = Literal[
    "portrait", "animal", "landscape", "architecture", "food", "product", "fantasy", "default"
]

LANGUAGES: tuple[Language, ...] = ("zh", "en")
# Detection order: on equal keyword counts the earlier category wins (the subject of the
# picture before its setting: "a cat in a city" is an animal picture).
CATEGORIES: tuple[Category, ...] = (
    "portrait", "animal", "food", "product", "fantasy", "architecture", "landscape", "default"
)  # fmt: skip


def _phrases(text: str) -> tuple[str, ...]:
    """`"a; b; c"` -> `("a", "b", "c")`."""
    return tuple(part.strip() for part in text.split(";") if part.strip())


@dataclass(frozen=True)
class Phrases:
    """The subject-specific groups of one category in one language."""

    lighting: tuple[str, ...]
    composition: tuple[str, ...]
    style: tuple[str, ...]


QUALITY: dict[Language, tuple[str, ...]] = {
    "zh": _phrases(
        "高清; 细节丰富; 画质精美; 8K分辨率; 杰作; 清晰锐利; 质感细腻; 色彩层次丰富; "
        "精致的细节; 专业级画质"
    ),
    "en": _phrases(
        "highly detailed; sharp focus; masterpiece; 8k resolution; best quality; "
        "intricate details; crisp textures; rich tonal range; professional grade; ultra clear"
    ),
}

PHRASES: dict[Language, dict[Category, Phrases]] = {
    "zh": {
        "portrait": Phrases(
            lighting=_phrases(
                "柔和的窗边自然光; 伦勃朗式布光; 温暖的轮廓光; 柔光箱照明; 逆光发丝光; "
                "黄金时刻的侧光; 蝴蝶光; 细腻的面部补光"
            ),
            composition=_phrases(
                "半身构图; 浅景深背景虚化; 眼神望向镜头; 三分法构图; 面部特写; "
                "85毫米镜头视角; 干净简洁的背景; 自然放松的姿态"
            ),
            style=_phrases(
                "写实人像摄影; 时尚杂志风格; 胶片质感; 电影感色调; 细腻的皮肤纹理; "
                "柔和的肤色; 古典油画人像风格; 清新日系风格"
            ),
        ),
        "animal": Phrases(
            lighting=_phrases(
                "清晨柔和的阳光; 毛发上的轮廓光; 斑驳的树影光线; 柔和的阴天漫射光; "
                "温暖的午后阳光; 逆光勾勒的毛边; 自然的环境光; 明亮的眼神光"
            ),
            composition=_phrases(
                "与动物视线平齐的低机位; 长焦镜头特写; 背景柔和虚化; 捕捉灵动瞬间; "
                "居中构图; 留出动物视线方向的空间; 全身入镜; 微距般的毛发细节"
            ),
            style=_phrases(
                "野生动物摄影; 国家地理风格; 根根分明的毛发; 温馨可爱的氛围; "
                "自然纪实风格; 细腻的工笔动物画风; 生动的神态; 真实的质感"
            ),
        ),
        "landscape": Phrases(
            lighting=_phrases(
                "金色的日落余晖; 清晨的薄雾光线; 穿透云层的丁达尔光; 蓝调时刻; "
                "戏剧性的天光; 柔和的晨曦; 雨后清透的光线; 星空下的微光"
            ),
            composition=_phrases(
                "广角全景; 前景中景远景层次分明; 引导线构图; 辽阔的地平线; "
                "高空俯瞰视角; 倒影对称构图; 开阔的天空留白; 层峦叠嶂的纵深感"
            ),
            style=_phrases(
                "风光摄影; 中国山水画意境; 壮丽恢弘; 宁静悠远的氛围; 色彩饱满; "
                "长曝光效果; 自然纪实风格; 印象派风景画风"
            ),
        ),
        "architecture": Phrases(
            lighting=_phrases(
                "夜晚璀璨的灯火; 蓝调时刻的城市灯光; 清晨斜射的阳光; 霓虹灯光映照; "
                "柔和的阴天光线; 玻璃幕墙的反光; 室内温暖的灯光; 日落时分的天际线"
            ),
            composition=_phrases(
                "对称构图; 仰拍的宏伟视角; 两点透视; 街道纵深的引导线; 航拍视角; "
                "线条简洁的几何构图; 广角建筑视角; 街头行人点缀"
            ),
            style=_phrases(
                "建筑摄影; 现代极简风格; 城市纪实风格; 赛璐璐插画风格; 精细的结构细节; "
                "都市氛围感; 复古街景风格; 建筑效果图质感"
            ),
        ),
        "food": Phrases(
            lighting=_phrases(
                "柔和的侧逆光; 温暖的餐厅灯光; 明亮的自然光; 诱人的高光; 柔光箱漫射光; "
                "清晨窗边的阳光; 微微的蒸汽光晕; 暖色调布光"
            ),
            composition=_phrases(
                "俯拍平铺构图; 45度角特写; 浅景深; 精致的摆盘; 木质桌面背景; "
                "点缀新鲜的配料; 留白的简洁构图; 微距食材细节"
            ),
            style=_phrases(
                "美食摄影; 杂志封面风格; 色泽诱人; 新鲜多汁; 热气腾腾; 家常温馨的氛围; "
                "高级餐厅风格; 日式简约风格"
            ),
        ),
        "product": Phrases(
            lighting=_phrases(
                "专业棚拍布光; 柔和的渐变背景光; 精准的轮廓光; 干净的白色背景光; "
                "细腻的反射高光; 柔光箱顶光; 低调的暗背景打光; 明亮均匀的光线"
            ),
            composition=_phrases(
                "产品居中; 微距细节; 悬浮展示; 简洁的几何背景; 三分之四角度视角; "
                "极简布景; 镜面倒影; 留出文案空间"
            ),
            style=_phrases(
                "商业产品摄影; 广告大片质感; 高级感; 极简主义; 精致的材质表现; "
                "电商主图风格; 三维渲染质感; 现代设计感"
            ),
        ),
        "fantasy": Phrases(
            lighting=_phrases(
                "神秘的魔法光芒; 霓虹光晕; 体积光; 幽蓝的月光; 发光的符文; "
                "穿透迷雾的光束; 星云般的光彩; 戏剧性的明暗对比"
            ),
            composition=_phrases(
                "史诗级宏大场景; 广角远景; 仰视视角; 电影镜头构图; 层次丰富的纵深; "
                "中心人物突出; 宏伟的尺度对比; 动态的构图"
            ),
            style=_phrases(
                "奇幻概念艺术; 赛博朋克风格; 数字绘画; 虚幻引擎渲染; 史诗感; "
                "科幻电影质感; 梦幻超现实风格; 游戏原画风格"
            ),
        ),
        "default": Phrases(
            lighting=_phrases(
                "柔和的自然光; 电影级布光; 温暖的光线; 明暗对比分明; 柔和的漫射光; "
                "黄金时刻的光线; 体积光; 清透的光影"
            ),
            composition=_phrases(
                "精心构图; 浅景深; 三分法构图; 主体突出; 平衡的画面; 广角视角; 层次分明; 中心构图"
            ),
            style=_phrases(
                "写实风格; 电影感; 数字艺术; 插画风格; 色彩和谐; 细腻质感; 氛围感; 艺术摄影风格"
            ),
        ),
    },
    "en": {
        "portrait": Phrases(
            lighting=_phrases(
                "soft window light; Rembrandt lighting; warm rim light; softbox key light; "
                "backlit hair glow; golden hour side light; butterfly lighting; "
                "gentle fill light on the face"
            ),
            composition=_phrases(
                "head and shoulders framing; shallow depth of field; eye contact with the "
                "camera; rule of thirds; close-up portrait; 85mm lens perspective; "
                "clean uncluttered background; relaxed natural pose"
            ),
            style=_phrases(
                "photorealistic portrait photography; fashion editorial style; analog film "
                "look; cinematic color grading; detailed skin texture; natural skin tones; "
                "classical oil portrait style; airy pastel mood"
            ),
        ),
        "animal": Phrases(
            lighting=_phrases(
                "soft morning sunlight; rim light on the fur; dappled light through leaves; "
                "overcast diffused light; warm afternoon sun; backlit fur outline; "
                "natural ambient light; bright catchlights in the eyes"
            ),
            composition=_phrases(
                "low angle at eye level with the animal; telephoto close-up; creamy "
                "background bokeh; candid moment; centered subject; space in the direction "
                "of its gaze; full body in frame; macro-level fur detail"
            ),
            style=_phrases(
                "wildlife photography; nature documentary style; individually visible fur; "
                "cozy and endearing mood; naturalistic style; fine brush animal painting; "
                "lively expression; lifelike textures"
            ),
        ),
        "landscape": Phrases(
            lighting=_phrases(
                "golden sunset glow; misty morning light; god rays breaking through clouds; "
                "blue hour; dramatic sky light; soft dawn light; clear light after rain; "
                "faint starlight"
            ),
            composition=_phrases(
                "wide panoramic view; layered foreground and background; leading lines; "
                "vast horizon; aerial perspective; mirrored reflection; open sky "
                "negative space; receding mountain ridges"
            ),
            style=_phrases(
                "landscape photography; traditional ink wash painting mood; majestic scale; "
                "serene atmosphere; vivid natural colors; long exposure; "
                "documentary realism; impressionist landscape painting"
            ),
        ),
        "architecture": Phrases(
            lighting=_phrases(
                "glittering night lights; city lights at blue hour; raking morning sun; "
                "neon reflections; soft overcast light; reflections on glass facades; "
                "warm interior lighting; skyline at sunset"
            ),
            composition=_phrases(
                "symmetrical composition; low angle looking up; two-point perspective; "
                "street vanishing point; drone view; clean geometric lines; "
                "wide-angle architectural view; pedestrians for scale"
            ),
            style=_phrases(
                "architectural photography; modern minimalist style; urban documentary; "
                "anime background art; fine structural detail; metropolitan atmosphere; "
                "vintage street scene; architectural visualization render"
            ),
        ),
        "food": Phrases(
            lighting=_phrases(
                "soft side backlight; warm restaurant lighting; bright natural light; "
                "appetizing highlights; diffused softbox light; morning window sun; "
                "wisps of steam catching the light; warm-toned lighting"
            ),
            composition=_phrases(
                "overhead flat lay; 45-degree close-up; shallow depth of field; elegant "
                "plating; rustic wooden table; scattered fresh ingredients; minimal "
                "composition with negative space; macro texture detail"
            ),
            style=_phrases(
                "food photography; magazine cover style; mouth-watering colors; fresh and "
                "juicy; steaming hot; homely cozy mood; fine dining presentation; "
                "Japanese minimalist style"
            ),
        ),
        "product": Phrases(
            lighting=_phrases(
                "professional studio lighting; soft gradient backdrop light; precise rim "
                "light; clean white background light; subtle specular highlights; "
                "overhead softbox; low-key dark backdrop; bright even illumination"
            ),
            composition=_phrases(
                "centered product shot; macro detail; floating product display; simple "
                "geometric props; three-quarter view; minimal set design; glossy "
                "reflection below; space left for copy"
            ),
            style=_phrases(
                "commercial product photography; advertising campaign look; premium feel; "
                "minimalism; accurate material rendering; e-commerce hero image; "
                "3d render look; contemporary design"
            ),
        ),
        "fantasy": Phrases(
            lighting=_phrases(
                "mystical magic glow; neon haze; volumetric lighting; eerie blue moonlight; "
                "glowing runes; light beams through fog; nebula-like colors; dramatic "
                "chiaroscuro"
            ),
            composition=_phrases(
                "epic sweeping scene; wide establishing shot; heroic low angle; cinematic "
                "framing; deep layered environment; strong central figure; grand sense of "
                "scale; dynamic composition"
            ),
            style=_phrases(
                "fantasy concept art; cyberpunk aesthetic; digital painting; unreal engine "
                "render; epic atmosphere; sci-fi film still; dreamlike surrealism; "
                "game key art style"
            ),
        ),
        "default": Phrases(
            lighting=_phrases(
                "soft natural light; cinematic lighting; warm light; strong contrast of "
                "light and shadow; soft diffused light; golden hour light; volumetric light; "
                "clean crisp lighting"
            ),
            composition=_phrases(
                "thoughtful composition; shallow depth of field; rule of thirds; clear "
                "focal point; balanced frame; wide-angle view; layered depth; "
                "centered composition"
            ),
            style=_phrases(
                "realistic style; cinematic mood; digital art; illustration style; "
                "harmonious colors; refined textures; atmospheric; fine art photography"
            ),
        ),
    },
}

# Category keywords. Chinese ones match as substrings; English ones as whole words
# (a trailing "s" or "es" allowed), case-insensitive. Both lists are searched whatever the
# prompt's language, so "一只 cat" still counts as an animal.
KEYWORDS: dict[Language, dict[Category, tuple[str, ...]]] = {
    "zh": {
        "portrait": _phrases(
            "人像; 肖像; 女孩; 男孩; 少女; 少年; 女人; 男人; 女士; 先生; 美女; 帅哥; 老人; "
            "孩子; 儿童; 婴儿; 新娘; 模特; 自拍; 面孔; 脸; 微笑; 人物; 姑娘"
        ),
        "animal": _phrases(
            "猫; 狗; 鸟; 骏马; 小马; 马匹; 鱼; 兔; 熊; 狐狸; 老虎; 狮子; 大象; "
            "鹿; 狼; 猴; 宠物; 动物; 蝴蝶; 鹰; 鹤; 企鹅; 小鸭; 松鼠; 熊猫; 羊; 奶牛; 牛群"
        ),
        "landscape": _phrases(
            "山; 河; 湖; 海; 森林; 草原; 瀑布; 沙漠; 雪山; 峡谷; 田野; 风景; 风光; 日落; "
            "日出; 星空; 云海; 花海; 海滩; 树林; 自然; 山水; 冰川"
        ),
        "architecture": _phrases(
            "城市; 上海; 北京; 东京; 纽约; 建筑; 街道; 街景; 大楼; 高楼; 摩天; "
            "房子; 城堡; 寺庙; 教堂; 宫殿; 桥; 塔; 古镇; 胡同; 室内; 客厅; 咖啡馆; 夜景; 广场"
        ),
        "food": _phrases(
            "美食; 食物; 蛋糕; 面条; 拉面; 寿司; 披萨; 汉堡; 水果; 甜点; 咖啡; 茶; 饺子; "
            "火锅; 料理; 早餐; 菜肴; 面包; 冰淇淋; 饮料"
        ),
        "product": _phrases(
            "产品; 商品; 手表; 手机; 香水; 瓶; 包装; 化妆品; 口红; 耳机; 鞋; 包包; 珠宝; "
            "戒指; 项链; 杯子; 电商; 广告图; 椅子; 台灯"
        ),
        "fantasy": _phrases(
            "奇幻; 魔法; 龙; 精灵; 仙女; 神话; 赛博朋克; 科幻; 机器人; 机甲; 宇宙; 太空; "
            "外星; 星球; 未来; 巫师; 怪兽; 仙侠; 飞船; 异世界"
        ),
        "default": (),
    },
    "en": {
        "portrait": _phrases(
            "portrait; girl; boy; woman; women; man; men; lady; gentleman; person; people; "
            "child; children; kid; baby; bride; model; selfie; face; smile; elder; "
            "teenager; headshot"
        ),
        "animal": _phrases(
            "cat; kitten; dog; puppy; bird; horse; fish; rabbit; bunny; bear; fox; tiger; "
            "lion; elephant; deer; wolf; monkey; pet; animal; butterfly; eagle; owl; "
            "penguin; squirrel; panda; sheep; cow"
        ),
        "landscape": _phrases(
            "mountain; river; lake; sea; ocean; forest; meadow; grassland; waterfall; desert; "
            "canyon; valley; field; landscape; scenery; sunset; sunrise; starry sky; beach; "
            "woods; nature; glacier; island"
        ),
        "architecture": _phrases(
            "city; cityscape; building; architecture; street; skyscraper; house; castle; "
            "temple; church; cathedral; palace; bridge; tower; town; village; interior; "
            "living room; cafe; skyline; downtown; alley"
        ),
        "food": _phrases(
            "food; cake; noodle; ramen; sushi; pizza; burger; hamburger; fruit; dessert; "
            "coffee; tea; dumpling; dish; breakfast; bread; ice cream; salad; steak; cocktail"
        ),
        "product": _phrases(
            "product; watch; smartphone; phone; perfume; bottle; packaging; cosmetics; "
            "lipstick; headphones; sneaker; shoe; handbag; jewelry; ring; necklace; mug; "
            "chair; lamp; gadget"
        ),
        "fantasy": _phrases(
            "fantasy; magic; dragon; elf; fairy; mythical; cyberpunk; sci-fi; "
            "science fiction; robot; mecha; spaceship; space; galaxy; alien; planet; "
            "futuristic; wizard; monster; steampunk"
        ),
        "default": (),
    },
}
