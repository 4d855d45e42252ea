"""The operator page's labels: Vietnamese by default, English with ``?lang=en`` (kept in a cookie)."""

from __future__ import annotations

from hub.console.action_labels import ACTION_LABELS, ACTION_STATES

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
LANG_COOKIE = "lienthong_lang"

# key: (Vietnamese, English)
_LABELS: dict[str, tuple[str, str]] = {
    "title": ("Bảng điều hành trục liên thông", "Exchange hub operator console"),
    "signin": ("Đăng nhập", "Sign in"),
    "signout": ("Đăng xuất", "Sign out"),
    "username": ("Tên đăng nhập", "User name"),
    "password": ("Mật khẩu", "Password"),
    "signin_help": (
        "Tài khoản vận hành do quản trị viên cấu hình (LIENTHONG_OPERATORS).",
        "Operator accounts are set by the administrator (LIENTHONG_OPERATORS).",
    ),
    "bad_login": ("Sai tên đăng nhập hoặc mật khẩu.", "Wrong user name or password."),
    "bad_csrf": (
        "Phiên làm việc đã hết hạn hoặc biểu mẫu không hợp lệ. Vui lòng thử lại.",
        "The session expired or the form is not valid. Please try again.",
    ),
    "throttled": (
        "Đăng nhập sai quá nhiều lần. Vui lòng chờ một lát rồi thử lại.",
        "Too many failed sign-ins. Please wait a moment and try again.",
    ),
    "needs_https": (
        "Trang này cần được mở qua HTTPS: trình duyệt sẽ không giữ phiên đăng nhập qua HTTP.",
        "Open this page over HTTPS: the browser will not keep a sign-in over plain HTTP.",
    ),
    "signed_in_as": ("Đăng nhập: ", "Signed in as "),
    "updated": ("Cập nhật lúc", "Updated at"),
    "stale": ("Mất kết nối — dữ liệu có thể đã cũ", "Connection lost — figures may be stale"),
    "auto_refresh": ("tự làm mới mỗi {n} giây", "refreshes every {n} s"),
    "summary_dead": ("Thư lỗi chờ xử lý", "Dead letters waiting"),
    "summary_pending": ("Đang chờ gửi", "Waiting to be delivered"),
    "summary_down": ("Đối tác mất kết nối", "Partners down"),
    "summary_overdue": ("Hồ sơ quá hạn tiếp nhận", "Dossiers past intake deadline"),
    # queues
    "queues": ("Hàng đợi theo đối tác nhận", "Queues per destination"),
    "destination": ("Đối tác nhận", "Destination"),
    "ready": ("Sẵn sàng", "Ready"),
    "in_flight": ("Đang gửi", "In flight"),
    "retrying": ("Chờ gửi lại", "Retrying"),
    "dead": ("Lỗi (thư chết)", "Dead"),
    "delivered": ("Đã gửi", "Delivered"),
    "oldest": ("Tin cũ nhất chờ", "Oldest waiting"),
    "rate": ("Tốc độ (tin/phút)", "Rate (msg/min)"),
    "no_queues": ("Chưa có tin nào được định tuyến.", "No message has been routed yet."),
    "old_hint": ("Tin chờ quá {age}", "Waiting longer than {age}"),
    # partners
    "partners": ("Đối tác kết nối", "Partners"),
    "partner": ("Đối tác", "Partner"),
    "kind": ("Loại", "Kind"),
    "state": ("Trạng thái", "State"),
    "last_success": ("Gửi thành công gần nhất", "Last success"),
    "error_rate": ("Tỷ lệ lỗi ({m} phút)", "Error rate ({m} min)"),
    "cert_days": ("Chứng thư hết hạn sau", "Certificate expires in"),
    "last_error": ("Lỗi gần nhất", "Last error"),
    "days": ("{n} ngày", "{n} days"),
    "never": ("chưa có", "never"),
    "no_cert": ("không có", "none"),
    "disabled": ("đã tắt", "disabled"),
    "state_healthy": ("Bình thường", "Healthy"),
    "state_degraded": ("Suy giảm", "Degraded"),
    "state_down": ("Mất kết nối", "Down"),
    "state_idle": ("Chưa có lưu lượng", "No traffic"),
    "state_push_only": ("Chỉ gửi lên trục", "Sends only"),
    "no_partners": ("Chưa có đối tác nào được đăng ký.", "No partner is registered yet."),
    "partners_note": (
        "Trạng thái suy ra từ các lần gửi gần đây: mất kết nối = nhiều lần lỗi liên tiếp, không lần nào thành công.",
        "State derived from recent attempts: down = repeated failures and no success in the window.",
    ),
    # dead letters
    "dead_letters": ("Thư lỗi (dead letters)", "Dead letters"),
    "reason": ("Lý do", "Reason"),
    "attempts": ("Số lần gửi", "Attempts"),
    "dossier": ("Mã hồ sơ", "Dossier code"),
    "message": ("Mã thông điệp", "Message id"),
    "type": ("Loại thông điệp", "Message type"),
    "since": ("Từ lúc", "Since"),
    "payload": ("Nội dung (đã che dữ liệu cá nhân)", "Payload (personal data masked)"),
    "show_payload": ("Xem nội dung", "Show payload"),
    "replay": ("Gửi lại", "Replay"),
    "replay_selected": ("Gửi lại các mục đã chọn", "Replay selected"),
    "select_all": ("Chọn tất cả", "Select all"),
    "no_dead": (
        "Không có thư lỗi nào. Mọi tin đều đã được gửi hoặc đang chờ.",
        "No dead letters. Every message is delivered or on its way.",
    ),
    "confirm_title": ("Xác nhận gửi lại", "Confirm replay"),
    "confirm_text": (
        "Các thư sau sẽ được gửi lại cho đối tác. Thao tác được ghi nhật ký với tên của bạn ({who}).",
        "These messages will be sent to their partner again. The action is recorded under your name ({who}).",
    ),
    "confirm": ("Xác nhận gửi lại", "Confirm replay"),
    "cancel": ("Huỷ", "Cancel"),
    "nothing_selected": ("Chưa chọn thư nào để gửi lại.", "No dead letter was selected."),
    "replayed_ok": ("Đã đưa {n} thư vào hàng đợi gửi lại.", "{n} dead letter(s) queued again."),
    "replay_failed": ("Không gửi lại được thư {id}: {error}", "Could not replay dead letter {id}: {error}"),
    # search
    "search": ("Tra cứu thông điệp / hồ sơ", "Message / dossier search"),
    "search_placeholder": ("Mã thông điệp hoặc mã hồ sơ", "Message id or dossier code"),
    "search_button": ("Tra cứu", "Search"),
    "not_found": ("Không tìm thấy thông điệp hay hồ sơ nào khớp với «{q}».", "No message or dossier matches “{q}”."),
    "trace": ("Lịch sử thông điệp", "Message trace"),
    "status": ("Tình trạng", "Status"),
    "sender": ("Bên gửi", "Sender"),
    "receiver": ("Bên nhận", "Receiver"),
    "received_at": ("Nhận lúc", "Received at"),
    "time": ("Thời điểm", "Time"),
    "event": ("Sự kiện", "Event"),
    "attempt": ("Lần", "Attempt"),
    "detail": ("Chi tiết", "Detail"),
    "actor": ("Người thực hiện", "By"),
    "deliveries": ("Chuyển phát", "Deliveries"),
    "timeline": ("Tiến trình hồ sơ", "Dossier timeline"),
    "dossier_status": ("Trạng thái hồ sơ hiện tại", "Current dossier status"),
    "outcome": ("Kết quả", "Outcome"),
    "source": ("Nguồn", "Source"),
    "messages_of_dossier": ("Các thông điệp của hồ sơ", "Messages of the dossier"),
    "times_note": ("Giờ Việt Nam (UTC+7)", "Vietnam time (UTC+7)"),
    # deadlines
    "deadlines": ("Thời hạn", "Deadlines"),
    "overdue_title": ("Hồ sơ vẫn ở trạng thái 1 quá 8 giờ làm việc", "Dossiers still at status 1 past 8 working hours"),
    "overdue_none": ("Không có hồ sơ nào quá hạn tiếp nhận.", "No dossier is past its intake deadline."),
    "overdue_unavailable": (
        "Chưa có truy vấn hạn tiếp nhận (lịch làm việc) trong bản cài đặt này; bảng này sẽ hiện khi có.",
        "The intake-deadline query (working calendar) is not installed yet; this table fills in once it is.",
    ),
    "submitted": ("Nộp lúc", "Submitted"),
    "due": ("Hạn", "Due"),
    "overdue_by": ("Quá hạn", "Overdue by"),
    "sync_lag": ("Độ trễ đồng bộ Cổng DVC quốc gia", "National portal sync lag"),
    "sync_waiting": (
        "{n} hồ sơ chưa đồng bộ, cũ nhất từ {at} ({age}).",
        "{n} dossier sync(s) not delivered, the oldest since {at} ({age}).",
    ),
    "sync_ok": ("Mọi hồ sơ đã được đồng bộ lên Cổng.", "Every dossier sync has reached the portal."),
    "sync_no_portal": ("Chưa đăng ký kết nối Cổng DVC quốc gia.", "No national portal connector is registered."),
    "payments": ("Xác nhận thanh toán bị từ chối", "Rejected payment confirmations"),
    "payments_none": ("Không có xác nhận thanh toán nào bị từ chối.", "No payment confirmation was rejected."),
    "payments_placeholder": (
        "Danh sách tạm: lấy từ các sự kiện có quy tắc payment-*; luồng thanh toán đầy đủ chưa cài đặt.",
        "Placeholder: built from events naming a payment-* rule; the full payment flow is not installed yet.",
    ),
    "age_s": ("{n} giây", "{n} s"),
    "age_m": ("{n} phút", "{n} min"),
    "age_h": ("{n} giờ", "{n} h"),
    "age_d": ("{n} ngày", "{n} d"),
}

MESSAGE_STATES = {
    "received": ("đã nhận", "received"),
    "validated": ("hợp lệ", "validated"),
    "queued": ("vào hàng đợi", "queued"),
    "attempt_started": ("bắt đầu gửi", "attempt started"),
    "delivered": ("đã gửi", "delivered"),
    "failed": ("lỗi", "failed"),
    "retry_scheduled": ("hẹn gửi lại", "retry scheduled"),
    "dead_lettered": ("chuyển thư lỗi", "dead-lettered"),
    "replayed": ("gửi lại", "replayed"),
    "rejected": ("bị từ chối", "rejected"),
    "viewed": ("được xem", "viewed"),
    "dead": ("lỗi", "dead"),
    "retrying": ("chờ gửi lại", "retrying"),
    "delivering": ("đang gửi", "delivering"),
    "accepted": ("đã nhận", "accepted"),
    "applied": ("áp dụng", "applied"),
    "stale": ("cũ, bỏ qua", "stale"),
    "corrected": ("đính chính", "corrected"),
    "exhausted": ("hết lượt gửi lại", "retries exhausted"),
    "mapping": ("lỗi chuyển đổi/ký", "mapping or signing failed"),
    "permanent": ("lỗi vĩnh viễn", "permanent failure"),
    "status_applied": ("cập nhật trạng thái hồ sơ", "dossier status applied"),
    "status_stale": ("trạng thái cũ, bỏ qua", "stale status ignored"),
    "status_rejected": ("trạng thái không hợp lệ", "status transition refused"),
    "status_corrected": ("đính chính trạng thái", "status corrected"),
}

_LABELS.update(ACTION_LABELS)
MESSAGE_STATES.update(ACTION_STATES)


def pick_lang(query: str | None, cookie: str | None) -> str:
    for value in (query, cookie):
        if value in LANGS:
            return value
    return DEFAULT_LANG


class Translator:
    """``t("key", n=3)`` in templates; unknown keys are shown as themselves (visible, never an error)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGS else DEFAULT_LANG
        self._index = LANGS.index(self.lang)

    def __call__(self, key: str, **values: object) -> str:
        pair = _LABELS.get(key)
        text = key if pair is None else pair[self._index]
        return text.format(**values) if values else text

    def state(self, state: str) -> str:
        pair = MESSAGE_STATES.get(state)
        return state if pair is None else pair[self._index]

    def age(self, seconds: float | None) -> str:
        if seconds is None:
            return "–"
        if seconds < 120:
            return self("age_s", n=int(seconds))
        if seconds < 7200:
            return self("age_m", n=int(seconds // 60))
        if seconds < 172800:
            return self("age_h", n=round(seconds / 3600, 1))
        return self("age_d", n=int(seconds // 86400))


def labels(lang: str) -> dict[str, str]:
    """Every label in one language (tests check both languages define the same keys)."""
    index = LANGS.index(lang)
    return {key: pair[index] for key, pair in _LABELS.items()}
