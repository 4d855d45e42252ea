"""The labels of the operator actions (``hub.console.actions``), merged into the page's translations
(``hub.console.i18n``): key → (Vietnamese, English)."""

from __future__ import annotations

ACTION_LABELS: dict[str, tuple[str, str]] = {
    "close": ("Đóng", "Close"),
    "pause": ("Tạm dừng", "Pause"),
    "resume": ("Tiếp tục", "Resume"),
    "retry_now": ("Gửi lại ngay", "Retry now"),
    "paused": ("Đang tạm dừng", "Paused"),
    "actions": ("Thao tác", "Actions"),
    "action_title_close": ("Đóng thư lỗi (không gửi lại)", "Close dead letters (without resending)"),
    "action_title_pause": ("Tạm dừng gửi tới đối tác", "Pause deliveries to"),
    "action_title_resume": ("Tiếp tục gửi tới đối tác", "Resume deliveries to"),
    "action_title_retry-now": ("Gửi lại ngay (bỏ qua thời gian chờ)", "Retry now (skip the backoff) for"),
    "close_text": (
        "Các thư lỗi dưới đây sẽ được đóng mà không gửi lại, ghi nhận người đóng ({who}), thời điểm và lý do.",
        "The dead letters below will be closed without resending; who ({who}), when and why are recorded.",
    ),
    "pause_text": (
        "Trục sẽ ngừng gọi đối tác này trong vài giây; tin đang chờ được giữ lại, không mất và không tính là lần "
        "gửi lỗi. Người tạm dừng ({who}), thời điểm và lý do được ghi nhận.",
        "The hub stops calling this partner within seconds; waiting messages are kept, none is lost or counted "
        "as a failed attempt. Who ({who}), when and why are recorded.",
    ),
    "resume_text": (
        "Trục sẽ gọi lại đối tác này; các tin đang chờ sẽ được gửi đi.",
        "The hub calls this partner again; the waiting messages flow.",
    ),
    "retry_now_text": (
        "{n} lần gửi đang chờ gửi lại sẽ được gửi ngay, mỗi tin một lần.",
        "{n} deliveries waiting for a retry will be sent now, each once.",
    ),
    "paused_by": ("Tạm dừng bởi {who} lúc {at}: {reason}", "Paused by {who} at {at}: {reason}"),
    "action_reason": ("Lý do (bắt buộc)", "Reason (required)"),
    "action_confirm_close": ("Xác nhận đóng", "Confirm close"),
    "action_confirm_pause": ("Xác nhận tạm dừng", "Confirm pause"),
    "action_confirm_resume": ("Xác nhận tiếp tục", "Confirm resume"),
    "action_confirm_retry-now": ("Xác nhận gửi lại ngay", "Confirm retry now"),
    "reason_required": ("Vui lòng nhập lý do.", "Please give a reason."),
    "closed_ok": ("Đã đóng {n} thư lỗi.", "{n} dead letter(s) closed."),
    "paused_ok": ("Đã tạm dừng gửi tới {n}.", "Deliveries to {n} paused."),
    "resumed_ok": ("Đã tiếp tục gửi tới {n}.", "Deliveries to {n} resumed."),
    "retried_ok": ("Đã đưa {n} lần gửi đi gửi lại ngay.", "{n} deliveries retried now."),
    "action_failed": ("Không thực hiện được thao tác.", "The action could not be done."),
    "action_error": ("{id} {error}", "{id} {error}"),
    # why an action was refused, by the error's class (hub.errors): said instead of its English text
    "err_DeadLetterClosedError": ("Thư lỗi {id} đã được đóng trước đó.", "Dead letter {id} was already closed."),
    "err_AlreadyReplayedError": ("Thư lỗi {id} đã được gửi lại trước đó.", "Dead letter {id} was already replayed."),
    "err_UnknownDeadLetterError": ("Không có thư lỗi {id}.", "There is no dead letter {id}."),
    "err_NotRetryingError": ("Không có lần gửi nào đang chờ gửi lại.", "No delivery is waiting for a retry."),
    "err_DestinationPausedError": ("Đối tác nhận này đang tạm dừng rồi.", "This destination is already paused."),
    "err_DestinationNotPausedError": ("Đối tác nhận này không bị tạm dừng.", "This destination is not paused."),
    "err_UnknownDestinationError": ("Không có đối tác nhận này.", "There is no such destination."),
    "err_StoreUnavailableError": (
        "Cơ sở dữ liệu tạm thời không truy cập được; hãy thử lại sau.",
        "The store cannot be reached just now; try again later.",
    ),
    # a dossier's status correction (hub.console.corrections)
    "correct_status": ("Đính chính trạng thái", "Correct the status"),
    "new_status": ("Trạng thái mới", "New status"),
    "action_title_correct": ("Đính chính trạng thái hồ sơ", "Correct the status of dossier"),
    "correct_text": (
        "Trạng thái hồ sơ sẽ đổi từ {before} sang trạng thái chọn dưới đây, kể cả khi quy tắc chuyển trạng thái không "
        "cho phép. Việc đính chính được ghi vào tiến trình hồ sơ và nhật ký kiểm tra (người thực hiện: {who}, lý do, "
        "trạng thái trước và sau) và được gửi tới hệ thống một cửa của tỉnh và Cổng DVCQG.",
        "The dossier's status goes from {before} to the status chosen below, even where the status rules forbid the "
        "move. The correction is recorded on the dossier's timeline and in the audit log (who: {who}, why, the "
        "status before and after) and sent to the province's one-stop system and the national portal.",
    ),
    "action_confirm_correct": ("Xác nhận đính chính", "Confirm the correction"),
    "corrected_ok": ("Đã đính chính trạng thái hồ sơ {n}.", "Dossier status corrected: {n}."),
    "status_required": ("Vui lòng chọn trạng thái mới.", "Please choose the new status."),
    "err_correction-unchanged": ("Hồ sơ {id} đang ở trạng thái này rồi.", "Dossier {id} has this status already."),
    "err_correction-stale": (
        "Đính chính cho hồ sơ {id} đã được ghi nhận nhưng không áp dụng: cập nhật gần nhất của hồ sơ muộn hơn "
        "hiện tại.",
        "The correction of dossier {id} was recorded, not applied: its last update is later than now.",
    ),
    "err_dossier-unknown": ("Hồ sơ {id} chưa có trạng thái nào.", "Dossier {id} has no status yet."),
    "err_reason-required": ("Vui lòng nhập lý do.", "Please give a reason."),
    "err_reason-characters": (
        "Lý do chứa ký tự điều khiển không gửi được; vui lòng xoá ký tự đó.",
        "The reason holds a control character that cannot be sent; please remove it.",
    ),
    "action_forbidden": (
        "Chỉ người vận hành hoặc quản trị viên được thực hiện thao tác này.",
        "Only an operator or an administrator may do this.",
    ),
}

ACTION_STATES: dict[str, tuple[str, str]] = {
    "closed": ("đã đóng", "closed"),
    "retry_now": ("gửi lại ngay", "retried now"),
}
