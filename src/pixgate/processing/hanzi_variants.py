"""Traditional Chinese characters and their simplified forms, for moderation's normalisation.

A small built-in table of the most common pairs (plus the characters of typical blocked
terms), not a full converter: `processing/moderation.normalize` maps both the configured terms
and the text through it, so a term written in either script matches text in either. Each
traditional character here is mapped to OpenCC's first simplified candidate, and no simplified
form is itself a key, so the mapping is one pass and idempotent.
"""

from __future__ import annotations

# Pairs of (traditional, simplified), written one after the other: "個个們们..."
PAIRS = (
    "個个們们來来這这為为國国說说時时會会對对學学後后發发經经過过動动開开還还種种樣样"
    "長长問问實实點点見见現现進进當当與与關关電电機机頭头業业愛爱書书東东車车馬马門门"
    "鳥鸟魚鱼龍龙風风飛飞語语話话讓让請请認认識识讀读寫写聽听買买賣卖錢钱貝贝網网無无"
    "麼么嗎吗幾几從从兒儿麗丽歡欢樂乐氣气熱热離离難难雙双邊边達达遠远運运選选連连遲迟"
    "場场報报壞坏塊块聲声處处備备傳传傷伤價价億亿優优儲储兩两內内冊册凍冻劃划劇剧勞劳"
    "勢势勵励區区協协單单卻却厲厉參参號号嚴严團团圍围圖图園园圓圆執执堅坚墮堕壓压壯壮"
    "夢梦奪夺奮奋婦妇媽妈孫孙寧宁寶宝將将專专尋寻導导層层屬属島岛帥帅師师帶带幫帮廣广"
    "廠厂張张彈弹強强歸归彙汇徑径復复憂忧懷怀戰战戲戏戶户掃扫擁拥擇择擊击擔担據据擴扩"
    "攝摄敗败敵敌數数斷断於于晝昼曉晓暫暂條条極极構构槍枪標标樹树橋桥檢检權权歲岁歷历"
    "殺杀殘残毀毁決决沒没洶汹淚泪淺浅測测湯汤滅灭滿满漢汉潔洁濃浓濕湿灣湾災灾烏乌煙烟"
    "爺爷牆墙犧牺獨独獲获獸兽環环產产畫画療疗盡尽監监盤盘眾众睜睁礙碍礦矿確确禮礼禍祸"
    "稱称穩稳窮穷競竞筆笔節节範范築筑簡简糧粮糾纠紅红約约級级紀纪純纯紙纸細细終终組组"
    "結结給给統统絕绝絲丝維维綠绿緊紧線线練练縣县總总績绩織织繩绳續续罰罚罷罢義义習习"
    "聖圣聞闻聯联聰聪職职肅肃脅胁腦脑腳脚膽胆臉脸臨临興兴舉举舊旧艦舰藝艺蘇苏蘭兰蟲虫"
    "蠶蚕補补裝装裡里裏里製制複复規规視视親亲覺觉覽览觀观觸触計计訂订討讨訓训記记設设"
    "許许訴诉診诊詞词試试詩诗該该詳详誠诚誤误課课誰谁調调談谈論论諸诸謀谋謝谢講讲證证"
    "譯译議议護护變变豐丰豬猪貓猫負负財财貢贡貧贫貨货販贩責责貴贵費费貼贴貿贸賀贺資资"
    "賊贼賓宾賞赏賠赔賢贤質质購购贊赞讚赞贏赢趕赶趙赵跡迹蹟迹踐践蹤踪軍军軌轨軟软較较"
    "載载輔辅輕轻輛辆輝辉輪轮輸输轉转辦办辭辞農农郵邮鄉乡醫医釋释針针釣钓鈴铃銀银銅铜"
    "銳锐鋼钢錄录錯错鍋锅鍵键鎖锁鎮镇鏡镜鐘钟鐵铁鑰钥閃闪閉闭閒闲閑闲間间閱阅闆板闊阔"
    "隊队陽阳陰阴陳陈陸陆際际隨随險险隱隐雖虽雜杂雞鸡雲云靈灵靜静響响順顺須须頂顶項项"
    "預预領领題题顏颜願愿類类顧顾顯显飯饭飲饮飽饱餅饼養养館馆餓饿駕驾驗验驚惊骯肮髒脏"
    "體体鬆松鬥斗鬧闹鮮鲜鳴鸣鴨鸭鵝鹅鹽盐麥麦黃黄黨党齊齐齒齿龜龟違违賭赌屍尸騙骗詐诈"
    "藥药煉炼鍊炼偽伪僞伪鈔钞獄狱綁绑搶抢盜盗竊窃亂乱兇凶褻亵戀恋姦奸顛颠膚肤擬拟濫滥"
    "謠谣誹诽謗谤銷销緝缉儀仪擾扰騷骚罵骂賤贱殭僵滾滚幹干屆届倆俩係系側侧偵侦僅仅僑侨"
    "償偿劉刘勁劲勝胜匯汇廳厅廢废廟庙彎弯態态慣惯慶庆憶忆應应懶懒懼惧撲扑擠挤攜携敘叙"
    "斃毙棄弃櫃柜歐欧氫氢溝沟準准漁渔漲涨潛潜澤泽濟济燈灯燒烧爐炉狀状獎奖瑪玛畢毕異异"
    "癢痒皺皱盞盏碼码磚砖祿禄禪禅稅税穀谷窩窝筍笋籃篮籠笼粵粤糞粪緒绪緩缓編编緣缘縮缩"
    "繞绕繪绘繼继纖纤羅罗翹翘聳耸膠胶艱艰莊庄華华萬万葉叶蓋盖蔣蒋薦荐薩萨藍蓝蘋苹虛虚"
    "蝦虾蠟蜡術术衛卫衝冲褲裤襯衬訊讯訪访詢询誕诞誌志諾诺謊谎謎谜譜谱豎竖豈岂貞贞貸贷"
    "賬账賴赖趨趋躍跃軀躯輩辈辯辩邏逻遞递遺遗適适鄰邻醜丑鈕钮鉛铅鋪铺錦锦鏈链閣阁闖闯"
    "陣阵隸隶霧雾韓韩頁页頓顿頻频顆颗颱台臺台颳刮飄飘飾饰饒饶騎骑騰腾驅驱驢驴髮发鬍胡"
    "鯨鲸鴻鸿鵬鹏鶴鹤鷹鹰麵面齡龄龐庞隻只週周衆众鬱郁麪面錶表鐳镭嚇吓噁恶惡恶"
)

TRADITIONAL = PAIRS[0::2]
SIMPLIFIED = PAIRS[1::2]

#: For `str.translate`: each traditional character of the table to its simplified form.
TO_SIMPLIFIED: dict[int, int] = str.maketrans(TRADITIONAL, SIMPLIFIED)


def to_simplified(text: str) -> str:
    """`text` with the table's traditional characters replaced by their simplified forms."""
    return text.translate(TO_SIMPLIFIED)
